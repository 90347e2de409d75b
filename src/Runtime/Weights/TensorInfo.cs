namespace Llama.Compiled;

/// <summary>
/// Where one tensor lives: its file, byte range and stored type. Built by a format reader only after
/// the range has been checked to lie inside the file, so it can be turned into a pointer directly.
/// </summary>
internal sealed class TensorInfo(string name, string dtype, long[] shape, MappedFile file, long offset, long byteLength)
{
    /// <summary>Name in the file (e.g. <c>model.layers.0.self_attn.q_proj.weight</c>).</summary>
    public string Name { get; } = name;

    /// <summary>Stored element type as the file spells it (<c>F32</c>, <c>F16</c>, <c>BF16</c>, <c>Q8_0</c>, <c>Q4_0</c>, <c>I64</c>, ...).</summary>
    public string DType { get; } = dtype;

    /// <summary>Dimensions, outermost first (row-major).</summary>
    public long[] Shape { get; } = shape;

    /// <summary>The mapped file holding the data.</summary>
    public MappedFile File { get; } = file;

    /// <summary>Offset of the first byte from the start of the file.</summary>
    public long Offset { get; } = offset;

    /// <summary>Number of bytes of data; equals the element count times the element size for known dtypes.</summary>
    public long ByteLength { get; } = byteLength;

    /// <summary>The same tensor under another name (GGUF names are mapped to Hugging Face names).</summary>
    public TensorInfo WithName(string newName) => newName == Name ? this : new(newName, DType, Shape, File, Offset, ByteLength);
}
