using System;
using System.Buffers;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Llama.Compiled;

/// <summary>
/// Row-by-row conversion between the stored element types (<c>F32</c>, <c>F16</c>, <c>BF16</c>, <c>Q8_0</c>,
/// <c>Q4_0</c>, as <see cref="TensorInfo.DType"/> spells them) and the compute formats of <see cref="WeightFormat"/>:
/// every stored type is expanded to F32 and then encoded, one row at a time, so a conversion needs only
/// one row of scratch memory besides its destination.
/// </summary>
internal static unsafe class TensorConversion
{
    /// <summary>The stored types this runtime reads, as the supported-types part of an error message.</summary>
    public const string SupportedList = "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K";

    /// <summary>True for the stored types this runtime can read.</summary>
    public static bool IsSupported(string dtype) => dtype is "BF16" || StoredFormat(dtype) is not null;

    /// <summary>The weight format a stored type is, byte for byte (null for BF16 and unknown types).</summary>
    public static WeightFormat? StoredFormat(string dtype) => dtype switch
    {
        "F32" => WeightFormat.F32,
        "F16" => WeightFormat.F16,
        "Q8_0" => WeightFormat.Q8_0,
        "Q4_0" => WeightFormat.Q4_0,
        "Q4_1" => WeightFormat.Q4_1,
        "Q5_0" => WeightFormat.Q5_0,
        "Q5_1" => WeightFormat.Q5_1,
        "Q4_K" => WeightFormat.Q4_K,
        "Q5_K" => WeightFormat.Q5_K,
        "Q6_K" => WeightFormat.Q6_K,
        _ => null,
    };

    /// <summary>True for llama.cpp's block formats (everything but the float types).</summary>
    public static bool IsBlockFormat(WeightFormat format) => format is not (WeightFormat.F32 or WeightFormat.F16);

    /// <summary>True when data stored as <paramref name="dtype"/> already is <paramref name="format"/> byte for byte.</summary>
    public static bool Matches(string dtype, WeightFormat format) => StoredFormat(dtype) == format;

    /// <summary>Bytes of a stored row of <paramref name="cols"/> elements (whole blocks for the block types).</summary>
    public static long StoredRowBytes(string dtype, long cols) =>
        dtype == "BF16" ? cols * 2
        : StoredFormat(dtype) is WeightFormat format ? BlockQuantization.RowBytes(format, checked((int)cols))
        : throw new ArgumentException($"unsupported stored type {dtype}", nameof(dtype));

    /// <summary>
    /// Converts <paramref name="rows"/> rows of <paramref name="cols"/> elements stored as <paramref name="dtype"/>
    /// at <paramref name="source"/> into <paramref name="format"/> at <paramref name="destination"/>
    /// (<see cref="BlockQuantization.RowBytes"/> bytes per row). Q8_0, Q4_0 and Q4_K are written in the kernels' layout
    /// (<see cref="BlockQuantization.ToKernelLayout"/>, <see cref="BlockQuantization.KernelLayoutBytes"/> in all), and read
    /// from it when <paramref name="sourceInKernelLayout"/>.
    /// </summary>
    public static void Convert(string dtype, byte* source, long rows, int cols, WeightFormat format, byte* destination, bool sourceInKernelLayout = false)
    {
        long sourceRow = StoredRowBytes(dtype, cols);
        long destinationRow = BlockQuantization.RowBytes(format, cols);

        // Whole-tensor fast paths for the common element-wise conversions.
        long count = rows * cols;
        if (count <= int.MaxValue)
        {
            if (dtype == "F16" && format == WeightFormat.F32)
            {
                TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(source, (int)count), new Span<float>(destination, (int)count));
                return;
            }
            if (dtype == "BF16" && format == WeightFormat.F32)
            {
                ConvertBFloat16((ushort*)source, (uint*)destination, (int)count);
                return;
            }
            if (dtype == "F32" && format == WeightFormat.F16)
            {
                TensorPrimitives.ConvertToHalf(new ReadOnlySpan<float>(source, (int)count), new Span<Half>(destination, (int)count));
                return;
            }
        }

        // Only Q8_0, Q4_0 and Q4_K have a kernel layout; the other block formats are used as stored. The kernel layout
        // interleaves groups of rows: a group is read out of it (or written into it) through a scratch of llama.cpp rows.
        const int GroupRows = BlockQuantization.KernelGroupRows;
        bool blocksIn = StoredFormat(dtype) is WeightFormat stored && BlockQuantization.HasKernelLayout(stored);
        bool blocksOut = BlockQuantization.HasKernelLayout(format);
        bool sameFormat = Matches(dtype, format);
        float[]? rented = format == WeightFormat.F32 || dtype == "F32" || sameFormat ? null : ArrayPool<float>.Shared.Rent(cols);
        byte* storedGroup = blocksIn && sourceInKernelLayout ? (byte*)NativeMemory.Alloc((nuint)(GroupRows * sourceRow)) : null;
        byte* encodedGroup = blocksOut && !sameFormat ? (byte*)NativeMemory.Alloc((nuint)(GroupRows * destinationRow)) : null;
        try
        {
            for (long first = 0; first < rows; first += GroupRows)
            {
                int groupRows = (int)Math.Min(GroupRows, rows - first);
                byte* sourceGroup = source + first * sourceRow;
                byte* destinationGroup = destination + first * destinationRow;
                if (storedGroup is not null)
                {
                    BlockQuantization.FromKernelLayout(DTypeFormat(dtype), groupRows, cols, new ReadOnlySpan<byte>(sourceGroup, (int)(GroupRows * sourceRow)),
                        new Span<byte>(storedGroup, (int)(groupRows * sourceRow)));
                    sourceGroup = storedGroup;
                }
                if (sameFormat && blocksOut)
                {
                    BlockQuantization.ToKernelLayout(format, groupRows, cols, new ReadOnlySpan<byte>(sourceGroup, (int)(groupRows * sourceRow)),
                        new Span<byte>(destinationGroup, (int)(GroupRows * destinationRow)));
                    continue;
                }
                byte* rowsOut = encodedGroup is not null ? encodedGroup : destinationGroup;
                for (int r = 0; r < groupRows; r++)
                    ConvertRow(dtype, sourceGroup + r * sourceRow, (int)sourceRow, cols, format, new Span<byte>(rowsOut + r * destinationRow, (int)destinationRow), rented, sameFormat);
                if (encodedGroup is not null)
                {
                    BlockQuantization.ToKernelLayout(format, groupRows, cols, new ReadOnlySpan<byte>(encodedGroup, (int)(groupRows * destinationRow)),
                        new Span<byte>(destinationGroup, (int)(GroupRows * destinationRow)));
                }
            }
        }
        finally
        {
            if (rented is not null)
                ArrayPool<float>.Shared.Return(rented);
            NativeMemory.Free(storedGroup);
            NativeMemory.Free(encodedGroup);
        }
    }

    /// <summary>One stored row into one row of <paramref name="format"/> in llama.cpp's layout (a copy when the formats match).</summary>
    private static void ConvertRow(string dtype, byte* source, int sourceBytes, int cols, WeightFormat format, Span<byte> destination, float[]? scratch, bool sameFormat)
    {
        if (sameFormat)
        {
            new ReadOnlySpan<byte>(source, sourceBytes).CopyTo(destination);
            return;
        }
        if (format == WeightFormat.F32)
        {
            Dequantize(dtype, source, MemoryMarshal.Cast<byte, float>(destination).Slice(0, cols));
            return;
        }
        Span<float> row;
        if (dtype == "F32")
            row = new Span<float>(source, cols);
        else
        {
            row = scratch.AsSpan(0, cols);
            Dequantize(dtype, source, row);
        }
        Encode(row, format, destination);
    }

    /// <summary>The compute format a block dtype is stored in.</summary>
    private static WeightFormat DTypeFormat(string dtype) => StoredFormat(dtype) ?? throw new ArgumentException($"unsupported stored type {dtype}", nameof(dtype));

    /// <summary>Expands <c>destination.Length</c> elements stored as <paramref name="dtype"/> to F32.</summary>
    public static void Dequantize(string dtype, byte* source, Span<float> destination)
    {
        int n = destination.Length;
        switch (dtype)
        {
            case "F32":
                new ReadOnlySpan<float>(source, n).CopyTo(destination);
                break;
            case "F16":
                TensorPrimitives.ConvertToSingle(new ReadOnlySpan<Half>(source, n), destination);
                break;
            case "BF16":
                fixed (float* d = destination)
                    ConvertBFloat16((ushort*)source, (uint*)d, n);
                break;
            default:
                WeightFormat format = StoredFormat(dtype) ?? throw new ArgumentException($"unsupported stored type {dtype}", nameof(dtype));
                BlockQuantization.Dequantize(format, new ReadOnlySpan<byte>(source, (int)BlockQuantization.RowBytes(format, n)), destination);
                break;
        }
    }

    /// <summary>Encodes one row of F32 values as <paramref name="format"/>.</summary>
    public static void Encode(ReadOnlySpan<float> row, WeightFormat format, Span<byte> destination)
    {
        switch (format)
        {
            case WeightFormat.F32:
                System.Runtime.InteropServices.MemoryMarshal.AsBytes(row).CopyTo(destination);
                break;
            case WeightFormat.F16:
                TensorPrimitives.ConvertToHalf(row, System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(destination));
                break;
            default:
                BlockQuantization.Quantize(format, row, destination);
                break;
        }
    }

    /// <summary>BF16 is the upper half of an F32: widen each 16-bit value and shift it into the high bits.</summary>
    public static void ConvertBFloat16(ushort* source, uint* destination, int count)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; i <= count - Vector<ushort>.Count; i += Vector<ushort>.Count)
            {
                Vector.Widen(Vector.Load(source + i), out Vector<uint> low, out Vector<uint> high);
                Vector.Store(low << 16, destination + i);
                Vector.Store(high << 16, destination + i + Vector<uint>.Count);
            }
        }
        for (; i < count; i++)
            destination[i] = (uint)source[i] << 16;
    }
}
