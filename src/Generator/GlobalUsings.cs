// The generator's name for the formats a matrix is computed in: the shared table's enum (src/Shared/QuantizationMix.cs),
// whose values equal Llama.Compiled.WeightFormat's (the generator does not load the attributes assembly).
global using ComputeFormat = Llama.Compiled.QuantizationFormat;
