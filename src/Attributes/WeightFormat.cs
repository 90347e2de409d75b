namespace Llama.Compiled
{
    /// <summary>
    /// The format the compiled kernels compute with. Weights stored in another format are converted
    /// when the model is loaded; weights stored in this format are used in place.
    /// </summary>
    public enum WeightFormat
    {
        /// <summary>32-bit floats: exact, 4 bytes per weight.</summary>
        F32 = 0,

        /// <summary>IEEE half floats: 2 bytes per weight, converted to F32 in the kernels.</summary>
        F16 = 1,

        /// <summary>llama.cpp's Q8_0: blocks of 32 int8 weights with one F16 scale (8.5 bits per weight).</summary>
        Q8_0 = 2,

        /// <summary>llama.cpp's Q4_0: blocks of 32 4-bit weights with one F16 scale (4.5 bits per weight).</summary>
        Q4_0 = 3,
    }
}
