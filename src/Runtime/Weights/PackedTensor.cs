using System;
using System.ComponentModel;

namespace Llama.Compiled.CompilerServices;

/// <summary>
/// A read-only view of one weight matrix in a compute format (<see cref="WeightFormat"/>), from
/// <see cref="ModelWeights.GetPackedMatrix"/>: row-major, <see cref="Rows"/> rows of <see cref="RowBytes"/>
/// bytes each. F32 rows are floats, F16 rows IEEE halves, Q5_K/Q6_K and Q4_1/Q5_0/Q5_1 llama.cpp's blocks as
/// stored; Q8_0, Q4_0 and Q4_K matrices are <c>Cols/32</c> blocks of llama.cpp's <c>block_q8_0</c> (34 bytes) or
/// <c>block_q4_0</c> (18 bytes), or <c>Cols/256</c> <c>block_q4_K</c> (144 bytes), per row, interleaved in groups of 8
/// rows into the generated kernels' layout
/// (<see cref="BlockQuantization.ToKernelLayout"/>; <see cref="BlockQuantization.FromKernelLayout"/> gives llama.cpp's
/// blocks back), so they have no rows of their own. The view points into the file's memory, the weight cache's mapping or
/// memory the weights own, and is valid only while the
/// <see cref="ModelWeights"/> it came from is not disposed.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public readonly unsafe struct PackedTensor
{
    private readonly byte* _data;
    private readonly string? _name;

    private readonly int _length;

    internal PackedTensor(string name, WeightFormat format, int rows, int cols, int rowBytes, int length, byte* data)
    {
        _length = length;
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

    /// <summary>Bytes of one row: Cols·4 (F32), Cols·2 (F16), Cols/32·34 (Q8_0), Cols/32·18 (Q4_0), Cols/256·144 (Q4_K).</summary>
    public int RowBytes { get; }

    /// <summary>
    /// All the weights: <see cref="Rows"/> × <see cref="RowBytes"/> bytes, or for Q8_0/Q4_0/Q4_K the kernel layout's whole groups
    /// of rows (<see cref="BlockQuantization.KernelLayoutBytes"/>).
    /// </summary>
    public ReadOnlySpan<byte> Bytes => new(_data, _length);

    /// <summary>The bytes of row <paramref name="row"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="row"/> is not in [0, Rows).</exception>
    /// <exception cref="InvalidOperationException">A Q8_0/Q4_0/Q4_K matrix, whose rows are interleaved.</exception>
    public ReadOnlySpan<byte> Row(int row)
    {
        if (BlockQuantization.HasKernelLayout(Format))
            throw new InvalidOperationException($"the rows of a {Format} matrix are interleaved in the kernel layout; read Bytes");
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(row, Rows);
        return new ReadOnlySpan<byte>(_data + (long)row * RowBytes, RowBytes);
    }
}
