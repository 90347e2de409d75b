using System;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Llama.Compiled;

/// <summary>
/// llama.cpp's Q8_0 and Q4_0 block formats, bit-exact with its reference implementations
/// (<c>quantize_row_q8_0_ref</c>, <c>quantize_row_q4_0_ref</c>, <c>dequantize_row_q8_0</c>,
/// <c>dequantize_row_q4_0</c> in ggml-quants.c). A block covers 32 consecutive weights of a row.
/// </summary>
/// <remarks>
/// <para><b>Q8_0</b> (<c>block_q8_0</c>, 34 bytes): the scale <c>d</c> as a little-endian IEEE half, then 32
/// signed bytes <c>q</c>; weight j is <c>q[j]·d</c>. Quantizing takes <c>d = amax/127</c> (amax the largest
/// magnitude in the block) and <c>q = roundf(x·(1/d))</c>, rounding halves away from zero, with the
/// unrounded F32 <c>d</c>; only the stored scale is rounded to F16.</para>
/// <para><b>Q4_0</b> (<c>block_q4_0</c>, 18 bytes): the scale <c>d</c> as a half, then 16 bytes; byte j holds
/// weight j in its low nibble and weight j+16 in its high nibble, and weight = <c>(nibble − 8)·d</c>.
/// Quantizing takes the signed value of largest magnitude <c>max</c>, <c>d = max/−8</c>, and
/// <c>nibble = min(15, (int)(x·(1/d) + 8.5))</c> (truncation), so <c>max</c> itself maps to 0 (−8·d).</para>
/// <para>The arithmetic is plain F32 without fused multiply-adds, as the C reference is written.</para>
/// </remarks>
public static partial class BlockQuantization
{
    /// <summary>Weights per block of Q8_0 and Q4_0.</summary>
    public const int BlockSize = LlamaArchitecture.QuantBlockSize;

    /// <summary>Bytes of one Q8_0 block: an F16 scale and 32 int8 values.</summary>
    public const int Q8_0BlockBytes = LlamaArchitecture.Q8_0BlockBytes;

    /// <summary>Bytes of one Q4_0 block: an F16 scale and 32 4-bit values.</summary>
    public const int Q4_0BlockBytes = LlamaArchitecture.Q4_0BlockBytes;

    /// <summary>
    /// Bytes one row of <paramref name="cols"/> weights takes in <paramref name="format"/>.
    /// </summary>
    /// <exception cref="ArgumentException">A block format with <paramref name="cols"/> not a multiple of its block
    /// (32 weights for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1; 256 for Q4_K, Q5_K, Q6_K).</exception>
    /// <exception cref="ArgumentOutOfRangeException">A mix (Q4_K_M, ...), which has no single row size, or an unknown format.</exception>
    public static long RowBytes(WeightFormat format, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cols);
        int block = WeightsPerBlock(format);
        if (cols % block != 0)
            throw new ArgumentException($"{format} rows need a multiple of {block} columns; got {cols}", nameof(cols));
        return (long)(cols / block) * BytesPerBlock(format);
    }

    /// <summary>Quantizes <paramref name="source"/> (a multiple of 32 values) to Q8_0 blocks in <paramref name="destination"/>.</summary>
    /// <exception cref="ArgumentException">The source length is not a multiple of 32, or the destination is shorter than 34 bytes per block.</exception>
    public static void QuantizeQ8_0(ReadOnlySpan<float> source, Span<byte> destination)
    {
        int blocks = CheckedBlocks(source.Length, destination.Length, Q8_0BlockBytes, nameof(destination));
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<float> x = source.Slice(b * BlockSize, BlockSize);
            Span<byte> y = destination.Slice(b * Q8_0BlockBytes, Q8_0BlockBytes);

            float amax = 0f;
            for (int j = 0; j < BlockSize; j++)
            {
                float a = MathF.Abs(x[j]);
                amax = amax > a ? amax : a; // MAX(amax, fabsf(v)) exactly, NaN included
            }

            float d = amax / 127f;
            float id = d != 0f ? 1f / d : 0f;
            BinaryPrimitives.WriteHalfLittleEndian(y, (Half)d);

            for (int j = 0; j < BlockSize; j++)
                y[2 + j] = (byte)(sbyte)RoundHalfAwayFromZero(x[j] * id);
        }
    }

    /// <summary>Expands Q8_0 blocks from <paramref name="source"/> into <paramref name="destination"/> (a multiple of 32 values).</summary>
    /// <exception cref="ArgumentException">The destination length is not a multiple of 32, or the source is shorter than 34 bytes per block.</exception>
    public static void DequantizeQ8_0(ReadOnlySpan<byte> source, Span<float> destination)
    {
        int blocks = CheckedBlocks(destination.Length, source.Length, Q8_0BlockBytes, nameof(source));
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = source.Slice(b * Q8_0BlockBytes, Q8_0BlockBytes);
            Span<float> y = destination.Slice(b * BlockSize, BlockSize);
            float d = (float)BinaryPrimitives.ReadHalfLittleEndian(x);
            ReadOnlySpan<sbyte> q = MemoryMarshal.Cast<byte, sbyte>(x.Slice(2));
            for (int j = 0; j < BlockSize; j++)
                y[j] = q[j] * d;
        }
    }

    /// <summary>Quantizes <paramref name="source"/> (a multiple of 32 values) to Q4_0 blocks in <paramref name="destination"/>.</summary>
    /// <exception cref="ArgumentException">The source length is not a multiple of 32, or the destination is shorter than 18 bytes per block.</exception>
    public static void QuantizeQ4_0(ReadOnlySpan<float> source, Span<byte> destination)
    {
        int blocks = CheckedBlocks(source.Length, destination.Length, Q4_0BlockBytes, nameof(destination));
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<float> x = source.Slice(b * BlockSize, BlockSize);
            Span<byte> y = destination.Slice(b * Q4_0BlockBytes, Q4_0BlockBytes);

            float amax = 0f, max = 0f;
            for (int j = 0; j < BlockSize; j++)
            {
                float v = x[j];
                if (amax < MathF.Abs(v))
                {
                    amax = MathF.Abs(v);
                    max = v;
                }
            }

            float d = max / -8f;
            float id = d != 0f ? 1f / d : 0f;
            BinaryPrimitives.WriteHalfLittleEndian(y, (Half)d);

            for (int j = 0; j < BlockSize / 2; j++)
            {
                float x0 = x[j] * id;
                float x1 = x[j + BlockSize / 2] * id;
                int q0 = Math.Min(15, TruncateToInt8(x0 + 8.5f));
                int q1 = Math.Min(15, TruncateToInt8(x1 + 8.5f));
                y[2 + j] = (byte)(q0 | (q1 << 4));
            }
        }
    }

    /// <summary>Expands Q4_0 blocks from <paramref name="source"/> into <paramref name="destination"/> (a multiple of 32 values).</summary>
    /// <exception cref="ArgumentException">The destination length is not a multiple of 32, or the source is shorter than 18 bytes per block.</exception>
    public static void DequantizeQ4_0(ReadOnlySpan<byte> source, Span<float> destination)
    {
        int blocks = CheckedBlocks(destination.Length, source.Length, Q4_0BlockBytes, nameof(source));
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = source.Slice(b * Q4_0BlockBytes, Q4_0BlockBytes);
            Span<float> y = destination.Slice(b * BlockSize, BlockSize);
            float d = (float)BinaryPrimitives.ReadHalfLittleEndian(x);
            for (int j = 0; j < BlockSize / 2; j++)
            {
                int packed = x[2 + j];
                y[j] = ((packed & 0x0F) - 8) * d;
                y[j + BlockSize / 2] = ((packed >> 4) - 8) * d;
            }
        }
    }

    /// <summary>Rows per group in the kernel layout of a Q8_0, Q4_0 or Q4_K matrix (see <see cref="ToKernelLayout"/>).</summary>
    public const int KernelGroupRows = LlamaArchitecture.KernelGroupRows;

    /// <summary>True for the formats the generated kernels read in the kernel layout (<see cref="ToKernelLayout"/>): Q8_0, Q4_0 and Q4_K.</summary>
    public static bool HasKernelLayout(WeightFormat format) => format is WeightFormat.Q8_0 or WeightFormat.Q4_0 or WeightFormat.Q4_K;

    /// <summary>
    /// The version of what <see cref="TensorConversion.Convert"/> writes for Q8_0/Q4_0/Q4_K (this kernel layout): cache files of
    /// converted weights (<see cref="WeightCache"/>) record it and are rebuilt when it differs. Bump it with every change
    /// to the layout. 3: Q4_K too (2: groups of 8 interleaved rows of Q8_0/Q4_0; 1 was per-row groups of 16 blocks).
    /// </summary>
    internal const int KernelLayoutVersion = 3;

    /// <summary>
    /// Bytes a Q8_0/Q4_0/Q4_K matrix of <paramref name="rows"/> × <paramref name="cols"/> takes in the kernel layout: whole
    /// groups of <see cref="KernelGroupRows"/> rows, the last one padded with rows of zeros.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Another format, or a negative size.</exception>
    /// <exception cref="ArgumentException"><paramref name="cols"/> is not whole blocks (32 weights, 256 for Q4_K).</exception>
    public static long KernelLayoutBytes(WeightFormat format, int rows, int cols)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        KernelBlockBytes(format);
        return (rows + KernelGroupRows - 1L) / KernelGroupRows * KernelGroupRows * RowBytes(format, cols);
    }

    /// <summary>
    /// Rearranges a matrix of llama.cpp blocks (<paramref name="rows"/> rows of blocks) into the layout the generated
    /// Q8_0/Q4_0/Q4_K kernels read. Rows go in groups of <see cref="KernelGroupRows"/> (the last group padded with
    /// zero rows, see <see cref="KernelLayoutBytes"/>), each group the same bytes as its 8 rows of blocks:
    /// <list type="bullet">
    /// <item>Q8_0, Q4_0: first the F16 scales, block by block: block b's scales of rows 0..7 (16 bytes), for every block
    /// of the row; then the weights, block by block: for each 4-byte slice k of a block's weight bytes (8 slices for Q8_0,
    /// 4 for Q4_0), that slice of rows 0..7 (32 bytes). Q8_0 weights are stored as unsigned bytes <c>q + 128</c>; Q4_0
    /// slices keep llama.cpp's nibble bytes (byte j: weight j low, weight j + 16 high, each + 8).</item>
    /// <item>Q4_K: super-block by super-block (1152 bytes each): the F16 <c>d</c> of rows 0..7 (16 bytes), their F16
    /// <c>dmin</c> (16 bytes), then the 12 bytes of 6-bit scales and mins as 3 slices of 4 bytes × 8 rows (96 bytes),
    /// then the 128 nibble bytes as 32 slices of 4 bytes × 8 rows (1024 bytes), all as llama.cpp stores them (slice k of
    /// 64-weight chunk j = k / 8 holds weights 64j + 4(k % 8) .. + 3 in its low nibbles, the same + 32 in its high ones).</item>
    /// </list>
    /// </summary>
    /// <remarks>
    /// Why: one 32-byte load then holds 4 weights of each of 8 rows, and the AVX-VNNI byte dot product
    /// (<c>vpdpbusd</c>, unsigned × signed, 4 products summed per int32 lane) with 4 activation bytes broadcast to every
    /// lane gives 8 rows' partial sums at once: no horizontal sums, and the same weights serve a tile of tokens. A
    /// block's 8 row scales are one 16-byte load; a Q4_K super-block's 6-bit scales unpack with lane-wise shifts and
    /// masks, one int32 lane per row. The kernels subtract 128·Σx (Q8_0) or 8·Σx (Q4_0) per block.
    /// </remarks>
    /// <param name="format">Q8_0, Q4_0 or Q4_K.</param>
    /// <param name="rows">Rows of the matrix.</param>
    /// <param name="cols">Weights per row, whole blocks (a multiple of 32, of 256 for Q4_K).</param>
    /// <param name="blocks">The matrix in llama.cpp's layout: <paramref name="rows"/> rows of blocks.</param>
    /// <param name="destination">At least <see cref="KernelLayoutBytes"/> long; must not overlap <paramref name="blocks"/>.</param>
    /// <exception cref="ArgumentException">A span is shorter than its shape, <paramref name="cols"/> is not whole blocks, or the spans overlap.</exception>
    public static void ToKernelLayout(WeightFormat format, int rows, int cols, ReadOnlySpan<byte> blocks, Span<byte> destination) =>
        Interleave(format, rows, cols, blocks, destination, toKernel: true);

    /// <summary>The inverse of <see cref="ToKernelLayout"/>: a matrix in the kernel layout back to <paramref name="rows"/> rows of llama.cpp's blocks.</summary>
    /// <exception cref="ArgumentException">A span is shorter than its shape, <paramref name="cols"/> is not whole blocks, or the spans overlap.</exception>
    public static void FromKernelLayout(WeightFormat format, int rows, int cols, ReadOnlySpan<byte> kernelLayout, Span<byte> blocks) =>
        Interleave(format, rows, cols, kernelLayout, blocks, toKernel: false);

    /// <summary>
    /// Row <paramref name="row"/> of a matrix in the kernel layout (<see cref="ToKernelLayout"/>), expanded to
    /// <paramref name="cols"/> floats: the lookup of a token embedding kept in that layout.
    /// </summary>
    /// <exception cref="ArgumentException">The matrix is shorter than the row's group needs, or the destination than <paramref name="cols"/>.</exception>
    public static void DequantizeKernelLayoutRow(WeightFormat format, int cols, ReadOnlySpan<byte> kernelLayout, int row, Span<float> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        KernelBlockBytes(format);
        int rowBytes = (int)RowBytes(format, cols), group = row / KernelGroupRows * KernelGroupRows * rowBytes;
        if (kernelLayout.Length < group + (long)KernelGroupRows * rowBytes || destination.Length < cols)
            throw new ArgumentException($"row {row} of a {format} matrix {cols} wide in the kernel layout is out of the spans' range");
        Span<byte> stored = rowBytes <= 4096 ? stackalloc byte[rowBytes] : new byte[rowBytes];
        MoveRow(format, rowBytes, ref Unsafe.AsRef(in kernelLayout[group]), row % KernelGroupRows, ref MemoryMarshal.GetReference(stored), toKernel: false);
        Dequantize(format, stored, destination.Slice(0, cols));
    }

    private static int KernelBlockBytes(WeightFormat format) => format switch
    {
        WeightFormat.Q8_0 => Q8_0BlockBytes,
        WeightFormat.Q4_0 => Q4_0BlockBytes,
        WeightFormat.Q4_K => Q4_KBlockBytes,
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "only Q8_0, Q4_0 and Q4_K have a kernel layout"),
    };

    private static void Interleave(WeightFormat format, int rows, int cols, ReadOnlySpan<byte> source, Span<byte> destination, bool toKernel)
    {
        long kernelBytes = KernelLayoutBytes(format, rows, cols), storedBytes = rows * RowBytes(format, cols);
        if (source.Length < (toKernel ? storedBytes : kernelBytes))
            throw new ArgumentException($"{rows} × {cols} {format} weights take {(toKernel ? storedBytes : kernelBytes)} bytes; the source has {source.Length}", nameof(source));
        if (destination.Length < (toKernel ? kernelBytes : storedBytes))
            throw new ArgumentException($"{rows} × {cols} {format} weights take {(toKernel ? kernelBytes : storedBytes)} bytes; the destination has {destination.Length}", nameof(destination));
        if (source.Overlaps(destination))
            throw new ArgumentException("the source and destination overlap", nameof(destination));

        int rowBytes = (int)RowBytes(format, cols);
        if (toKernel)
            destination.Slice(0, (int)kernelBytes).Clear(); // the padding rows of the last group
        ref byte from0 = ref MemoryMarshal.GetReference(source);
        ref byte to0 = ref MemoryMarshal.GetReference(destination);
        for (int row = 0; row < rows; row++)
        {
            int group = row / KernelGroupRows * KernelGroupRows * rowBytes, lane = row % KernelGroupRows;
            if (toKernel)
                MoveRow(format, rowBytes, ref Unsafe.Add(ref to0, group), lane, ref Unsafe.Add(ref from0, row * rowBytes), toKernel);
            else
                MoveRow(format, rowBytes, ref Unsafe.Add(ref from0, group), lane, ref Unsafe.Add(ref to0, row * rowBytes), toKernel);
        }
    }

    /// <summary>
    /// One row between llama.cpp's blocks (<paramref name="stored"/>, <paramref name="rowBytes"/> bytes) and lane
    /// <paramref name="lane"/> of its group in the kernel layout (<paramref name="group"/>), in the direction <paramref name="toKernel"/> says.
    /// </summary>
    private static void MoveRow(WeightFormat format, int rowBytes, ref byte group, int lane, ref byte stored, bool toKernel)
    {
        int blockBytes = KernelBlockBytes(format), blocksPerRow = rowBytes / blockBytes;
        if (format == WeightFormat.Q4_K)
        {
            // Per super-block: d, dmin (2 bytes per row each), then 35 slices of 4 bytes (3 of scales, 32 of nibbles).
            for (int b = 0; b < blocksPerRow; b++)
            {
                int block = b * blockBytes, kernel = b * KernelGroupRows * blockBytes;
                MoveScale(ref group, kernel + lane * 2, ref stored, block, toKernel);
                MoveScale(ref group, kernel + KernelGroupRows * 2 + lane * 2, ref stored, block + 2, toKernel);
                for (int slice = 0; slice < (blockBytes - 4) / 4; slice++)
                    MoveSlice(ref group, kernel + KernelGroupRows * 4 + slice * KernelGroupRows * 4 + lane * 4, ref stored, block + 4 + slice * 4, toKernel, 0);
            }
            return;
        }
        int quantBytes = blockBytes - 2, weightsStart = KernelGroupRows * 2 * blocksPerRow;
        uint flip = format == WeightFormat.Q8_0 ? 0x80808080u : 0u; // q + 128 = q ^ 0x80 for each signed byte
        for (int b = 0; b < blocksPerRow; b++)
        {
            int block = b * blockBytes;                                              // llama.cpp: [scale][quants]
            int slices = weightsStart + b * KernelGroupRows * quantBytes + lane * 4; // kernel: the block's first 4-byte slice of row `lane`
            MoveScale(ref group, (b * KernelGroupRows + lane) * 2, ref stored, block, toKernel);
            for (int slice = 0; slice < quantBytes; slice += 4)
                MoveSlice(ref group, slices + slice * KernelGroupRows, ref stored, block + 2 + slice, toKernel, flip);
        }
    }

    /// <summary>Copies an F16 scale between kernel[kernelOffset] and stored[storedOffset], in the direction <paramref name="toKernel"/> says.</summary>
    private static void MoveScale(ref byte kernel, int kernelOffset, ref byte stored, int storedOffset, bool toKernel)
    {
        if (toKernel)
            Unsafe.WriteUnaligned(ref Unsafe.Add(ref kernel, kernelOffset), Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref stored, storedOffset)));
        else
            Unsafe.WriteUnaligned(ref Unsafe.Add(ref stored, storedOffset), Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref kernel, kernelOffset)));
    }

    /// <summary>Copies a 4-byte slice between kernel[kernelOffset] and stored[storedOffset], each byte XOR its byte of <paramref name="flip"/>.</summary>
    private static void MoveSlice(ref byte kernel, int kernelOffset, ref byte stored, int storedOffset, bool toKernel, uint flip)
    {
        if (toKernel)
            Unsafe.WriteUnaligned(ref Unsafe.Add(ref kernel, kernelOffset), Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref stored, storedOffset)) ^ flip);
        else
            Unsafe.WriteUnaligned(ref Unsafe.Add(ref stored, storedOffset), Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref kernel, kernelOffset)) ^ flip);
    }

    /// <summary>C's <c>roundf</c>: nearest integer, halves away from zero; then C's conversion to <c>int8_t</c> for in-range values.</summary>
    private static int RoundHalfAwayFromZero(float value)
    {
        float rounded = MathF.Round(value, MidpointRounding.AwayFromZero);
        // In range for every finite block (|x·id| ≤ 127 up to rounding); NaN, which the C code leaves
        // undefined, becomes 0 here.
        return float.IsNaN(rounded) ? 0 : (int)Math.Clamp(rounded, -128f, 127f);
    }

    /// <summary>C's <c>(int8_t)</c> conversion of a float: truncation toward zero (the value is within [0, 17) for finite input).</summary>
    private static int TruncateToInt8(float value) =>
        float.IsNaN(value) ? 0 : (int)Math.Clamp(MathF.Truncate(value), -128f, 127f);

    private static int CheckedBlocks(int values, int bytes, int blockBytes, string bytesName)
    {
        if (values % BlockSize != 0)
            throw new ArgumentException($"the number of values ({values}) must be a multiple of {BlockSize}");
        int blocks = values / BlockSize;
        if (bytes < (long)blocks * blockBytes)
            throw new ArgumentException($"{blocks} blocks need {(long)blocks * blockBytes} bytes; the span has {bytes}", bytesName);
        return blocks;
    }
}
