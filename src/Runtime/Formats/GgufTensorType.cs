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

    /// <summary>Blocks of 32 int8 weights with an F16 scale, 34 bytes (see <see cref="BlockQuantization"/>).</summary>
    Q8_0 = 8,

    /// <summary>bfloat16: the upper 16 bits of an F32.</summary>
    BF16 = 30,
}
