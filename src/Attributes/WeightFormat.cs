namespace Llama.Compiled
{
    /// <summary>
    /// The format the compiled kernels compute with: one block format for every matrix, or a mix named as llama.cpp's
    /// <c>llama-quantize</c> names it, which picks each tensor's format by llama.cpp's rules. Weights stored in the
    /// format the compiled model expects are used in place; F32, F16 and BF16 weights are quantized when the model is
    /// loaded. A model compiled from a GGUF file takes every tensor's format from the file and ignores this option.
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

        /// <summary>llama.cpp's Q4_1: blocks of 32 4-bit weights with an F16 scale and minimum (5 bits per weight).</summary>
        Q4_1 = 4,

        /// <summary>llama.cpp's Q5_0: blocks of 32 5-bit weights with one F16 scale (5.5 bits per weight).</summary>
        Q5_0 = 5,

        /// <summary>llama.cpp's Q5_1: blocks of 32 5-bit weights with an F16 scale and minimum (6 bits per weight).</summary>
        Q5_1 = 6,

        /// <summary>llama.cpp's Q4_K: super-blocks of 256 4-bit weights in 8 sub-blocks with 6-bit scales and minimums (4.5 bits per weight).</summary>
        Q4_K = 7,

        /// <summary>llama.cpp's Q5_K: super-blocks of 256 5-bit weights in 8 sub-blocks with 6-bit scales and minimums (5.5 bits per weight).</summary>
        Q5_K = 8,

        /// <summary>llama.cpp's Q6_K: super-blocks of 256 6-bit weights in 16 sub-blocks with int8 scales (6.5625 bits per weight).</summary>
        Q6_K = 9,

        /// <summary>
        /// llama.cpp's Q4_K_M mix: Q4_K, with Q6_K for the classifier and for attn_v and ffn_down in the layers llama.cpp
        /// gives more bits (the first and last eighth, every third between).
        /// </summary>
        Q4_K_M = 20,

        /// <summary>llama.cpp's Q4_K_S mix: Q4_K, with Q6_K for the classifier, Q5_K for the first 4 attn_v and the first eighth of ffn_down.</summary>
        Q4_K_S = 21,

        /// <summary>llama.cpp's Q5_K_M mix: Q5_K, with Q6_K for the classifier and for attn_v and ffn_down in the layers llama.cpp gives more bits.</summary>
        Q5_K_M = 22,

        /// <summary>llama.cpp's Q5_K_S mix: Q5_K, with Q6_K for the classifier.</summary>
        Q5_K_S = 23,

        /// <summary>
        /// What <c>llama-quantize … Q4_0</c> writes (llama.cpp's <c>LLAMA_FTYPE_MOSTLY_Q4_0</c>): Q4_0, with Q6_K for the classifier
        /// (Q8_0 when its width is not a multiple of 256). <see cref="Q4_0"/> puts every matrix in Q4_0.
        /// </summary>
        MostlyQ4_0 = 30,

        /// <summary>What <c>llama-quantize … Q4_1</c> writes: Q4_1, with Q6_K (or Q8_0) for the classifier.</summary>
        MostlyQ4_1 = 31,

        /// <summary>What <c>llama-quantize … Q5_0</c> writes: Q5_0, with Q6_K (or Q8_0) for the classifier.</summary>
        MostlyQ5_0 = 32,

        /// <summary>What <c>llama-quantize … Q5_1</c> writes: Q5_1, with Q6_K (or Q8_0) for the classifier.</summary>
        MostlyQ5_1 = 33,
    }
}
