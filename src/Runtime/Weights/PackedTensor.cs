using System;

namespace Llama.Compiled;

/// <summary>
/// A read-only view of one weight matrix in a compute format (<see cref="WeightFormat"/>), from
/// <see cref="ModelWeights.GetPackedMatrix"/>: row-major, <see cref="Rows"/> rows of <see cref="RowBytes"/>
/// bytes each. F32 rows are floats, F16 rows IEEE halves, Q8_0 rows <c>Cols/32</c> blocks of 34 bytes
/// (llama.cpp's <c>block_q8_0</c>) and Q4_0 rows <c>Cols/32</c> blocks of 18 bytes (<c>block_q4_0</c>); see
/// <see cref="BlockQuantization"/>. The view points into the memory-mapped file or into memory the
/// weights own, and is valid only while the <see cref="ModelWeights"/> it came from is not disposed.
/// </summary>
public readonly unsafe struct PackedTensor
{
    private readonly byte* _data;
    private readonly float* _blockScales;
    private readonly string? _name;

    internal PackedTensor(string name, WeightFormat format, int rows, int cols, int rowBytes, byte* data, float* blockScales)
    {
        _blockScales = blockScales;
        _name = name;
        Format = format;
        Rows = rows;
        Cols = cols;
        RowBytes = rowBytes;
        _data = data;
    }

    /// <summary>The tensor's name (the Hugging Face name for every file format).</summary>
    public string Name => _name ?? string.Empty; // default(PackedTensor) has no name

    /// <summary>How the bytes encode the weights.</summary>
    public WeightFormat Format { get; }

    /// <summary>Number of rows (output features of a projection).</summary>
    public int Rows { get; }

    /// <summary>Number of weights per row (input features of a projection).</summary>
    public int Cols { get; }

    /// <summary>Bytes of one row: Cols·4 (F32), Cols·2 (F16), Cols/32·34 (Q8_0), Cols/32·18 (Q4_0).</summary>
    public int RowBytes { get; }

    /// <summary>All rows, <see cref="Rows"/> × <see cref="RowBytes"/> bytes.</summary>
    public ReadOnlySpan<byte> Bytes => new(_data, Rows * RowBytes);

    /// <summary>
    /// Q8_0/Q4_0: each block's F16 scale as a float, [Rows, Cols/32] (the same values as in <see cref="Bytes"/>,
    /// converted once at load so kernels need no half conversion). Empty for F32 and F16.
    /// </summary>
    public ReadOnlySpan<float> BlockScales => _blockScales is null ? default : new(_blockScales, Rows * (Cols / 32));

    /// <summary>The bytes of row <paramref name="row"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="row"/> is not in [0, Rows).</exception>
    public ReadOnlySpan<byte> Row(int row)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(row, Rows);
        return new ReadOnlySpan<byte>(_data + (long)row * RowBytes, RowBytes);
    }
}
