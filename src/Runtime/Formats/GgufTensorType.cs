namespace Llama.Compiled;

/// <summary>
/// The tensor types of GGUF files this library reads and writes, with ggml's numbers
/// (<c>enum ggml_type</c>) as they are stored in the file.
/// </summary>
public enum GgufTensorType : uint
{
    /// <summary>32-bit floats.</summary>
    F32 = 0,

    /// <summary>IEEE half floats.</summary>
    F16 = 1,

    /// <summary>Blocks of 32 4-bit weights with an F16 scale, 18 bytes (see <see cref="BlockQuantization"/>).</summary>
    Q4_0 = 2,

    /// <summary>Blocks of 32 4-bit weights with an F16 scale and minimum, 20 bytes.</summary>
    Q4_1 = 3,

    /// <summary>Blocks of 32 5-bit weights with an F16 scale, 22 bytes.</summary>
    Q5_0 = 6,

    /// <summary>Blocks of 32 5-bit weights with an F16 scale and minimum, 24 bytes.</summary>
    Q5_1 = 7,

    /// <summary>Blocks of 32 int8 weights with an F16 scale, 34 bytes (see <see cref="BlockQuantization"/>).</summary>
    Q8_0 = 8,

    /// <summary>Super-blocks of 256 2-bit weights, 84 bytes (read and sized; not computed with).</summary>
    Q2_K = 10,

    /// <summary>Super-blocks of 256 3-bit weights, 110 bytes (read and sized; not computed with).</summary>
    Q3_K = 11,

    /// <summary>Super-blocks of 256 4-bit weights with 6-bit sub-block scales and minimums, 144 bytes.</summary>
    Q4_K = 12,

    /// <summary>Super-blocks of 256 5-bit weights with 6-bit sub-block scales and minimums, 176 bytes.</summary>
    Q5_K = 13,

    /// <summary>Super-blocks of 256 6-bit weights with int8 sub-block scales, 210 bytes.</summary>
    Q6_K = 14,

    /// <summary>Blocks of 32 4-bit indices into a non-linear table with an F16 scale, 18 bytes (read and sized; not computed with).</summary>
    IQ4_NL = 20,

    /// <summary>bfloat16: the upper 16 bits of an F32.</summary>
    BF16 = 30,
}
