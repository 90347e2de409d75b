using System;
using System.Buffers.Binary;
using System.Numerics.Tensors;
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

    /// <summary>Blocks per group in the kernel layout of a Q8_0/Q4_0 row (see <see cref="ToKernelLayout"/>).</summary>
    public const int KernelGroupBlocks = LlamaArchitecture.KernelGroupBlocks;

    /// <summary>
    /// The version of what <see cref="TensorConversion.Convert"/> writes for Q8_0/Q4_0 (this kernel layout): cache files of
    /// converted weights (<see cref="WeightCache"/>) record it and are rebuilt when it differs. Bump it with every change
    /// to the layout.
    /// </summary>
    internal const int KernelLayoutVersion = 1;

    /// <summary>
    /// Rearranges one row of llama.cpp blocks into the layout the generated Q8_0/Q4_0 kernels read (the same number of
    /// bytes): the row's blocks in groups of <see cref="KernelGroupBlocks"/> (the last group holds the remaining
    /// blocks), each group the blocks' F16 scales first (2 bytes each), then their weights (32 bytes per Q8_0 block,
    /// 16 per Q4_0 block). Q8_0 weights are stored as unsigned bytes <c>q + 128</c>; Q4_0 weights keep llama.cpp's
    /// nibble bytes (byte j: weight j low, weight j + 16 high, each + 8).
    /// </summary>
    /// <remarks>
    /// Why: the scales of 8 blocks are then one 16-byte load instead of 8 loads 34 bytes apart, the weights of a
    /// 16-block Q8_0 group start 32-byte boundaries when the row does, and unsigned weights are what the
    /// AVX-VNNI byte dot product (<c>vpdpbusd</c>, unsigned × signed) takes without moving signs onto the
    /// activations; the kernels subtract 128·Σx (Q8_0) or 8·Σx (Q4_0) per block afterwards.
    /// </remarks>
    /// <param name="format">Q8_0 or Q4_0.</param>
    /// <param name="blocks">One row of blocks in llama.cpp's layout.</param>
    /// <param name="destination">At least as long as <paramref name="blocks"/>; must not overlap it.</param>
    /// <exception cref="ArgumentException">The source is not whole blocks, the destination is shorter, or the spans overlap.</exception>
    public static void ToKernelLayout(WeightFormat format, ReadOnlySpan<byte> blocks, Span<byte> destination) =>
        Regroup(format, blocks, destination, toKernel: true);

    /// <summary>The inverse of <see cref="ToKernelLayout"/>: one row in the kernel layout back to llama.cpp's blocks.</summary>
    /// <exception cref="ArgumentException">The source is not whole blocks, the destination is shorter, or the spans overlap.</exception>
    public static void FromKernelLayout(WeightFormat format, ReadOnlySpan<byte> kernelRow, Span<byte> blocks) =>
        Regroup(format, kernelRow, blocks, toKernel: false);

    private static void Regroup(WeightFormat format, ReadOnlySpan<byte> source, Span<byte> destination, bool toKernel)
    {
        int blockBytes = format switch
        {
            WeightFormat.Q8_0 => Q8_0BlockBytes,
            WeightFormat.Q4_0 => Q4_0BlockBytes,
            _ => throw new ArgumentOutOfRangeException(nameof(format), format, "only Q8_0 and Q4_0 have a kernel layout"),
        };
        if (source.Length % blockBytes != 0)
            throw new ArgumentException($"a row of {format} blocks is a multiple of {blockBytes} bytes; got {source.Length}", nameof(source));
        if (destination.Length < source.Length)
            throw new ArgumentException($"the destination has {destination.Length} bytes; the row needs {source.Length}", nameof(destination));
        if (source.Overlaps(destination))
            throw new ArgumentException("the source and destination overlap", nameof(destination));

        int quantBytes = blockBytes - 2;
        byte flip = format == WeightFormat.Q8_0 ? (byte)0x80 : (byte)0; // q + 128 = q ^ 0x80 for a signed byte
        int blocks = source.Length / blockBytes;
        for (int group = 0; group < blocks; group += KernelGroupBlocks)
        {
            int count = Math.Min(KernelGroupBlocks, blocks - group);
            int groupStart = group * blockBytes;
            for (int j = 0; j < count; j++)
            {
                int block = groupStart + j * blockBytes;                 // llama.cpp: [scale][quants] per block
                int scale = groupStart + 2 * j;                          // kernel: [count scales][count × quants]
                int quants = groupStart + 2 * count + j * quantBytes;
                (int scaleFrom, int scaleTo, int quantsFrom, int quantsTo) = toKernel ? (block, scale, block + 2, quants) : (scale, block, quants, block + 2);
                source.Slice(scaleFrom, 2).CopyTo(destination.Slice(scaleTo, 2));
                TensorPrimitives.Xor(source.Slice(quantsFrom, quantBytes), flip, destination.Slice(quantsTo, quantBytes));
            }
        }
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
