using System;
using System.Buffers.Binary;

namespace Llama.Compiled;

// llama.cpp's Q4_1, Q5_0, Q5_1 (blocks of 32) and Q4_K, Q5_K, Q6_K (super-blocks of 256) in GGUF's stored layout,
// bit-exact with ggml's dequantize_row_* and quantize_row_*_ref (ggml-quants.c; no importance matrix).
//
// Q4_1 (20 B): d, m (F16), qs[16]; byte j: weight j low nibble, weight j+16 high; weight = q·d + m.
// Q5_0 (22 B): d, qh (uint32, bit j = fifth bit of weight j), qs[16] as Q4_1; weight = (q − 16)·d.
// Q5_1 (24 B): d, m, qh, qs[16]; weight = q·d + m.
// Q4_K (144 B): d, dmin (F16), scales[12] (8 six-bit scales and 8 six-bit mins, packed), qs[128]; the 32 bytes
//   qs[32i..32i+32) hold sub-block 2i in their low nibbles and sub-block 2i+1 in their high nibbles;
//   weight = d·sc·q − dmin·m.
// Q5_K (176 B): d, dmin, scales[12], qh[32], qs[128]; bit k of qh[l] is the fifth bit of weight 32k + l.
// Q6_K (210 B): ql[128], qh[64], scales[16] (int8), d; per half of 128 weights (ql 64 B, qh 32 B):
//   weight l, l+32, l+64, l+96 = low/low/high/high nibble of ql[l], ql[l+32], ql[l], ql[l+32] with bits 0-1, 2-3,
//   4-5, 6-7 of qh[l] above them; minus 32; times d·scales[weight/16].
//
// The quantizers are ports of the C reference in its own operation order, plain F32 without fused multiply-adds;
// nearest_int is ggml's magic-number rounding (halves to even).
public static partial class BlockQuantization
{
    /// <summary>Weights per super-block of Q4_K, Q5_K and Q6_K (ggml's QK_K).</summary>
    public const int SuperBlockSize = 256;

    /// <summary>Bytes of one Q4_1 block: F16 scale and minimum, 32 4-bit weights.</summary>
    public const int Q4_1BlockBytes = 20;

    /// <summary>Bytes of one Q5_0 block: F16 scale, 32 fifth bits, 32 4-bit weights.</summary>
    public const int Q5_0BlockBytes = 22;

    /// <summary>Bytes of one Q5_1 block: F16 scale and minimum, 32 fifth bits, 32 4-bit weights.</summary>
    public const int Q5_1BlockBytes = 24;

    /// <summary>Bytes of one Q4_K super-block: F16 d and dmin, 12 bytes of 6-bit scales and mins, 256 4-bit weights.</summary>
    public const int Q4_KBlockBytes = 144;

    /// <summary>Bytes of one Q5_K super-block: as Q4_K plus 32 bytes of fifth bits.</summary>
    public const int Q5_KBlockBytes = 176;

    /// <summary>Bytes of one Q6_K super-block: 256 6-bit weights (128 + 64 bytes), 16 int8 scales, F16 d.</summary>
    public const int Q6_KBlockBytes = 210;

    /// <summary>Weights per block of <paramref name="format"/>: 1 for F32 and F16, 32 for Q8_0..Q5_1, 256 for the K formats.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A mix (Q4_K_M, ...) or an unknown format.</exception>
    public static int WeightsPerBlock(WeightFormat format) => format switch
    {
        WeightFormat.F32 or WeightFormat.F16 => 1,
        WeightFormat.Q8_0 or WeightFormat.Q4_0 or WeightFormat.Q4_1 or WeightFormat.Q5_0 or WeightFormat.Q5_1 => BlockSize,
        WeightFormat.Q4_K or WeightFormat.Q5_K or WeightFormat.Q6_K => SuperBlockSize,
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "not a single tensor format"),
    };

    /// <summary>Bytes per block of <paramref name="format"/> (4 and 2 for one F32 or F16 weight).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A mix (Q4_K_M, ...) or an unknown format.</exception>
    public static int BytesPerBlock(WeightFormat format) => format switch
    {
        WeightFormat.F32 => 4,
        WeightFormat.F16 => 2,
        WeightFormat.Q8_0 => Q8_0BlockBytes,
        WeightFormat.Q4_0 => Q4_0BlockBytes,
        WeightFormat.Q4_1 => Q4_1BlockBytes,
        WeightFormat.Q5_0 => Q5_0BlockBytes,
        WeightFormat.Q5_1 => Q5_1BlockBytes,
        WeightFormat.Q4_K => Q4_KBlockBytes,
        WeightFormat.Q5_K => Q5_KBlockBytes,
        WeightFormat.Q6_K => Q6_KBlockBytes,
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "not a single tensor format"),
    };

    /// <summary>
    /// Quantizes <paramref name="source"/> (whole blocks of <paramref name="format"/>) into <paramref name="destination"/>
    /// as ggml's <c>quantize_row_*_ref</c> does, byte for byte.
    /// </summary>
    /// <exception cref="ArgumentException">The source is not whole blocks, or the destination is too short.</exception>
    /// <exception cref="ArgumentOutOfRangeException">F32, F16, a mix or an unknown format.</exception>
    public static void Quantize(WeightFormat format, ReadOnlySpan<float> source, Span<byte> destination)
    {
        int blocks = CheckedBlocks(format, source.Length, destination.Length, nameof(destination));
        int size = WeightsPerBlock(format), bytes = BytesPerBlock(format);
        Span<byte> scratch = stackalloc byte[SuperBlockSize];
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<float> x = source.Slice(b * size, size);
            Span<byte> y = destination.Slice(b * bytes, bytes);
            switch (format)
            {
                case WeightFormat.Q8_0: QuantizeQ8_0(x, y); break;
                case WeightFormat.Q4_0: QuantizeQ4_0(x, y); break;
                case WeightFormat.Q4_1: QuantizeQ4_1Block(x, y); break;
                case WeightFormat.Q5_0: QuantizeQ5_0Block(x, y); break;
                case WeightFormat.Q5_1: QuantizeQ5_1Block(x, y); break;
                case WeightFormat.Q4_K: QuantizeQ4_5KBlock(x, y, 15, scratch); break;
                case WeightFormat.Q5_K: QuantizeQ4_5KBlock(x, y, 31, scratch); break;
                default: QuantizeQ6_KBlock(x, y, scratch); break;
            }
        }
    }

    /// <summary>
    /// Expands whole blocks of <paramref name="format"/> from <paramref name="source"/> into <paramref name="destination"/>
    /// as ggml's <c>dequantize_row_*</c> does, bit for bit.
    /// </summary>
    /// <exception cref="ArgumentException">The destination is not whole blocks, or the source is too short.</exception>
    /// <exception cref="ArgumentOutOfRangeException">F32, F16, a mix or an unknown format.</exception>
    public static void Dequantize(WeightFormat format, ReadOnlySpan<byte> source, Span<float> destination)
    {
        int blocks = CheckedBlocks(format, destination.Length, source.Length, nameof(source));
        int size = WeightsPerBlock(format), bytes = BytesPerBlock(format);
        for (int b = 0; b < blocks; b++)
        {
            ReadOnlySpan<byte> x = source.Slice(b * bytes, bytes);
            Span<float> y = destination.Slice(b * size, size);
            switch (format)
            {
                case WeightFormat.Q8_0: DequantizeQ8_0(x, y); break;
                case WeightFormat.Q4_0: DequantizeQ4_0(x, y); break;
                case WeightFormat.Q4_1 or WeightFormat.Q5_0 or WeightFormat.Q5_1: DequantizeLegacyBlock(format, x, y); break;
                case WeightFormat.Q4_K or WeightFormat.Q5_K: Dequantize4_5KBlock(format, x, y); break;
                default: DequantizeQ6_KBlock(x, y); break;
            }
        }
    }

    /// <summary>Sub-block j's 6-bit scale and min of a Q4_K/Q5_K super-block (ggml's get_scale_min_k4).</summary>
    internal static (int Scale, int Min) ScaleMinK4(int j, ReadOnlySpan<byte> q) => j < 4
        ? (q[j] & 63, q[j + 4] & 63)
        : ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4));

    private static int CheckedBlocks(WeightFormat format, int values, int bytes, string bytesName)
    {
        if (format is WeightFormat.F32 or WeightFormat.F16)
            throw new ArgumentOutOfRangeException(nameof(format), format, "not a block format");
        int size = WeightsPerBlock(format), blockBytes = BytesPerBlock(format);
        if (values % size != 0)
            throw new ArgumentException($"{format}: the number of values ({values}) must be a multiple of {size}");
        int blocks = values / size;
        if (bytes < (long)blocks * blockBytes)
            throw new ArgumentException($"{blocks} {format} blocks need {(long)blocks * blockBytes} bytes; the span has {bytes}", bytesName);
        return blocks;
    }

    private static void DequantizeLegacyBlock(WeightFormat format, ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = (float)BinaryPrimitives.ReadHalfLittleEndian(x);
        float m = format == WeightFormat.Q5_0 ? 0f : (float)BinaryPrimitives.ReadHalfLittleEndian(x.Slice(2));
        uint qh = format == WeightFormat.Q4_1 ? 0u : BinaryPrimitives.ReadUInt32LittleEndian(x.Slice(format == WeightFormat.Q5_0 ? 2 : 4));
        ReadOnlySpan<byte> qs = x.Slice(x.Length - 16);
        for (int j = 0; j < 16; j++)
        {
            int x0 = (qs[j] & 0x0F) | (int)((qh >> j) << 4 & 0x10);
            int x1 = (qs[j] >> 4) | (int)((qh >> (j + 12)) & 0x10);
            if (format == WeightFormat.Q5_0)
            {
                y[j] = (x0 - 16) * d;
                y[j + 16] = (x1 - 16) * d;
            }
            else
            {
                y[j] = x0 * d + m;
                y[j + 16] = x1 * d + m;
            }
        }
    }

    private static void Dequantize4_5KBlock(WeightFormat format, ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = (float)BinaryPrimitives.ReadHalfLittleEndian(x);
        float min = (float)BinaryPrimitives.ReadHalfLittleEndian(x.Slice(2));
        ReadOnlySpan<byte> scales = x.Slice(4, 12);
        bool five = format == WeightFormat.Q5_K;
        ReadOnlySpan<byte> qh = five ? x.Slice(16, 32) : default;
        ReadOnlySpan<byte> qs = x.Slice(five ? 48 : 16, 128);
        for (int i = 0; i < 4; i++)
        {
            (int sc1, int m1) = ScaleMinK4(2 * i, scales);
            (int sc2, int m2) = ScaleMinK4(2 * i + 1, scales);
            float d1 = d * sc1, min1 = min * m1, d2 = d * sc2, min2 = min * m2;
            for (int l = 0; l < 32; l++)
            {
                int high1 = five && (qh[l] & (1 << (2 * i))) != 0 ? 16 : 0;
                int high2 = five && (qh[l] & (2 << (2 * i))) != 0 ? 16 : 0;
                y[64 * i + l] = d1 * ((qs[32 * i + l] & 0xF) + high1) - min1;
                y[64 * i + 32 + l] = d2 * ((qs[32 * i + l] >> 4) + high2) - min2;
            }
        }
    }

    private static void DequantizeQ6_KBlock(ReadOnlySpan<byte> x, Span<float> y)
    {
        float d = (float)BinaryPrimitives.ReadHalfLittleEndian(x.Slice(208));
        for (int half = 0; half < 2; half++)
        {
            ReadOnlySpan<byte> ql = x.Slice(64 * half, 64);
            ReadOnlySpan<byte> qh = x.Slice(128 + 32 * half, 32);
            ReadOnlySpan<byte> sc = x.Slice(192 + 8 * half, 8);
            Span<float> yh = y.Slice(128 * half, 128);
            for (int l = 0; l < 32; l++)
            {
                int s = l / 16;
                int q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                yh[l] = d * (sbyte)sc[s] * q1;
                yh[l + 32] = d * (sbyte)sc[s + 2] * q2;
                yh[l + 64] = d * (sbyte)sc[s + 4] * q3;
                yh[l + 96] = d * (sbyte)sc[s + 6] * q4;
            }
        }
    }

    private static void QuantizeQ4_1Block(ReadOnlySpan<float> x, Span<byte> y)
    {
        (float min, float max) = MinMax(x);
        float d = (max - min) / 15f;
        float id = d != 0f ? 1f / d : 0f;
        BinaryPrimitives.WriteHalfLittleEndian(y, (Half)d);
        BinaryPrimitives.WriteHalfLittleEndian(y.Slice(2), (Half)min);
        for (int j = 0; j < 16; j++)
        {
            int q0 = Math.Min(15, TruncateToInt8((x[j] - min) * id + 0.5f));
            int q1 = Math.Min(15, TruncateToInt8((x[j + 16] - min) * id + 0.5f));
            y[4 + j] = (byte)(q0 | (q1 << 4));
        }
    }

    private static void QuantizeQ5_0Block(ReadOnlySpan<float> x, Span<byte> y)
    {
        float amax = 0f, max = 0f;
        foreach (float v in x)
        {
            if (amax < MathF.Abs(v))
            {
                amax = MathF.Abs(v);
                max = v;
            }
        }
        float d = max / -16f;
        float id = d != 0f ? 1f / d : 0f;
        BinaryPrimitives.WriteHalfLittleEndian(y, (Half)d);
        uint qh = 0;
        for (int j = 0; j < 16; j++)
        {
            int q0 = Math.Min(31, TruncateToInt8(x[j] * id + 16.5f));
            int q1 = Math.Min(31, TruncateToInt8(x[j + 16] * id + 16.5f));
            y[6 + j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint)(q0 >> 4 & 1) << j | (uint)(q1 >> 4 & 1) << (j + 16);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(y.Slice(2), qh);
    }

    private static void QuantizeQ5_1Block(ReadOnlySpan<float> x, Span<byte> y)
    {
        (float min, float max) = MinMax(x);
        float d = (max - min) / 31f;
        float id = d != 0f ? 1f / d : 0f;
        BinaryPrimitives.WriteHalfLittleEndian(y, (Half)d);
        BinaryPrimitives.WriteHalfLittleEndian(y.Slice(2), (Half)min);
        uint qh = 0;
        for (int j = 0; j < 16; j++)
        {
            // (uint8_t)(v + 0.5f): truncation, and no clamp in the C code (the value is within [0, 31.5] for finite input).
            int q0 = TruncateToUInt8((x[j] - min) * id + 0.5f);
            int q1 = TruncateToUInt8((x[j + 16] - min) * id + 0.5f);
            y[8 + j] = (byte)((q0 & 0x0F) | ((q1 & 0x0F) << 4));
            qh |= (uint)(q0 >> 4 & 1) << j | (uint)(q1 >> 4 & 1) << (j + 16);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(y.Slice(4), qh);
    }

    private static (float Min, float Max) MinMax(ReadOnlySpan<float> x)
    {
        float min = float.MaxValue, max = -float.MaxValue;
        foreach (float v in x)
        {
            if (v < min)
                min = v;
            if (v > max)
                max = v;
        }
        return (min, max);
    }

    /// <summary>quantize_row_q4_K_ref (nmax 15) and quantize_row_q5_K_ref (nmax 31) for one super-block.</summary>
    private static void QuantizeQ4_5KBlock(ReadOnlySpan<float> x, Span<byte> y, int nmax, Span<byte> levels)
    {
        bool five = nmax == 31;
        Span<float> scales = stackalloc float[8], mins = stackalloc float[8], weights = stackalloc float[32];
        Span<byte> aux = stackalloc byte[32];
        float maxScale = 0f, maxMin = 0f;
        for (int j = 0; j < 8; j++)
        {
            ReadOnlySpan<float> xs = x.Slice(32 * j, 32);
            float sumX2 = 0f;
            for (int l = 0; l < 32; l++)
                sumX2 += xs[l] * xs[l];
            float avX = MathF.Sqrt(sumX2 / 32f);
            for (int l = 0; l < 32; l++)
                weights[l] = avX + MathF.Abs(xs[l]);
            scales[j] = five
                ? MakeQkx2Quants(xs, nmax, weights, levels.Slice(32 * j, 32), out mins[j], aux, -0.5f, 0.1f, 15)
                : MakeQkx2Quants(xs, nmax, weights, levels.Slice(32 * j, 32), out mins[j], aux, -1f, 0.1f, 20);
            if (scales[j] > maxScale)
                maxScale = scales[j];
            if (mins[j] > maxMin)
                maxMin = mins[j];
        }

        float invScale = maxScale > 0f ? 63f / maxScale : 0f;
        float invMin = maxMin > 0f ? 63f / maxMin : 0f;
        Span<byte> packed = y.Slice(4, 12);
        packed.Clear();
        for (int j = 0; j < 8; j++)
        {
            // uint8_t ls = nearest_int(...): C's conversion to uint8_t wraps, then MIN(63, ls).
            byte ls = Math.Min((byte)63, (byte)NearestInt(invScale * scales[j]));
            byte lm = Math.Min((byte)63, (byte)NearestInt(invMin * mins[j]));
            if (j < 4)
            {
                packed[j] = ls;
                packed[j + 4] = lm;
            }
            else
            {
                packed[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
                packed[j - 4] |= (byte)((ls >> 4) << 6);
                packed[j] |= (byte)((lm >> 4) << 6);
            }
        }
        Half dHalf = (Half)(maxScale / 63f), minHalf = (Half)(maxMin / 63f);
        BinaryPrimitives.WriteHalfLittleEndian(y, dHalf);
        BinaryPrimitives.WriteHalfLittleEndian(y.Slice(2), minHalf);

        for (int j = 0; j < 8; j++)
        {
            (int sc, int m) = ScaleMinK4(j, packed);
            float d = (float)dHalf * sc;
            if (d == 0f)
                continue; // the levels of make_qkx2_quants stay
            float dm = (float)minHalf * m;
            for (int l = 0; l < 32; l++)
                levels[32 * j + l] = (byte)Math.Clamp(NearestInt((x[32 * j + l] + dm) / d), 0, nmax);
        }

        Span<byte> qs = y.Slice(five ? 48 : 16, 128);
        Span<byte> qh = five ? y.Slice(16, 32) : default;
        qh.Clear();
        for (int i = 0; i < 4; i++)
        {
            for (int l = 0; l < 32; l++)
            {
                int l1 = levels[64 * i + l], l2 = levels[64 * i + 32 + l];
                if (five)
                {
                    if (l1 > 15)
                    {
                        l1 -= 16;
                        qh[l] |= (byte)(1 << (2 * i));
                    }
                    if (l2 > 15)
                    {
                        l2 -= 16;
                        qh[l] |= (byte)(2 << (2 * i));
                    }
                }
                qs[32 * i + l] = (byte)(l1 | (l2 << 4));
            }
        }
    }

    /// <summary>ggml's make_qkx2_quants (use_mad false): a scale and a min (returned as −min) fit by weighted least squares over nstep+1 trial scales.</summary>
    private static float MakeQkx2Quants(ReadOnlySpan<float> x, int nmax, ReadOnlySpan<float> weights, Span<byte> levels, out float theMin,
        Span<byte> aux, float rmin, float rdelta, int nstep)
    {
        int n = x.Length;
        float min = x[0], max = x[0];
        float sumW = weights[0];
        float sumX = sumW * x[0];
        for (int i = 1; i < n; i++)
        {
            if (x[i] < min)
                min = x[i];
            if (x[i] > max)
                max = x[i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[i];
        }
        if (min > 0f)
            min = 0f;
        if (max == min)
        {
            levels.Slice(0, n).Clear();
            theMin = -min;
            return 0f;
        }
        float iscale = nmax / (max - min);
        float scale = 1f / iscale;
        float bestError = 0f;
        for (int i = 0; i < n; i++)
        {
            int l = NearestInt(iscale * (x[i] - min));
            levels[i] = (byte)Math.Max(0, Math.Min(nmax, l));
            float diff = scale * levels[i] + min - x[i];
            bestError += weights[i] * (diff * diff);
        }
        for (int step = 0; step <= nstep; step++)
        {
            iscale = (rmin + rdelta * step + nmax) / (max - min);
            float sumL = 0f, sumL2 = 0f, sumXL = 0f;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Max(0, Math.Min(nmax, NearestInt(iscale * (x[i] - min))));
                aux[i] = (byte)l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXL += w * l * x[i];
            }
            float det = sumW * sumL2 - sumL * sumL;
            if (det > 0f)
            {
                float thisScale = (sumW * sumXL - sumX * sumL) / det;
                float thisMin = (sumL2 * sumX - sumL * sumXL) / det;
                if (thisMin > 0f)
                {
                    thisMin = 0f;
                    thisScale = sumXL / sumL2;
                }
                float error = 0f;
                for (int i = 0; i < n; i++)
                {
                    float diff = thisScale * aux[i] + thisMin - x[i];
                    error += weights[i] * (diff * diff);
                }
                if (error < bestError)
                {
                    aux.Slice(0, n).CopyTo(levels);
                    bestError = error;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        theMin = -min;
        return scale;
    }

    /// <summary>quantize_row_q6_K_ref for one super-block.</summary>
    private static void QuantizeQ6_KBlock(ReadOnlySpan<float> x, Span<byte> y, Span<byte> levels)
    {
        Span<float> scales = stackalloc float[16];
        float maxScale = 0f, maxAbsScale = 0f;
        for (int ib = 0; ib < 16; ib++)
        {
            float scale = MakeQxQuants(x.Slice(16 * ib, 16), 32, levels.Slice(16 * ib, 16));
            scales[ib] = scale;
            float absScale = MathF.Abs(scale);
            if (absScale > maxAbsScale)
            {
                maxAbsScale = absScale;
                maxScale = scale;
            }
        }

        if (maxAbsScale < GroupMaxEps)
        {
            y.Clear();
            return;
        }

        float iscale = -128f / maxScale;
        Half dHalf = (Half)(1f / iscale);
        BinaryPrimitives.WriteHalfLittleEndian(y.Slice(208), dHalf);
        Span<byte> sc = y.Slice(192, 16);
        for (int ib = 0; ib < 16; ib++)
            sc[ib] = (byte)(sbyte)Math.Min(127, NearestInt(iscale * scales[ib]));

        for (int j = 0; j < 16; j++)
        {
            float d = (float)dHalf * (sbyte)sc[j];
            if (d == 0f)
                continue; // the levels of make_qx_quants stay
            for (int l = 0; l < 16; l++)
                levels[16 * j + l] = (byte)(Math.Clamp(NearestInt(x[16 * j + l] / d), -32, 31) + 32);
        }

        for (int half = 0; half < 2; half++)
        {
            Span<byte> ql = y.Slice(64 * half, 64);
            Span<byte> qh = y.Slice(128 + 32 * half, 32);
            ReadOnlySpan<byte> lv = levels.Slice(128 * half, 128);
            for (int l = 0; l < 32; l++)
            {
                ql[l] = (byte)((lv[l] & 0xF) | ((lv[l + 64] & 0xF) << 4));
                ql[l + 32] = (byte)((lv[l + 32] & 0xF) | ((lv[l + 96] & 0xF) << 4));
                qh[l] = (byte)((lv[l] >> 4) | ((lv[l + 32] >> 4) << 2) | ((lv[l + 64] >> 4) << 4) | ((lv[l + 96] >> 4) << 6));
            }
        }
    }

    /// <summary>ggml's GROUP_MAX_EPS: below it a group counts as all zeros.</summary>
    private const float GroupMaxEps = 1e-15f;

    /// <summary>
    /// ggml's make_qx_quants with rmse_type 1 and no importance weights (weight x²): signed levels in [−nmax, nmax)
    /// stored + nmax, the scale chosen among 19 trials by weighted least squares.
    /// </summary>
    private static float MakeQxQuants(ReadOnlySpan<float> x, int nmax, Span<byte> levels)
    {
        int n = x.Length;
        float max = 0f, amax = 0f;
        for (int i = 0; i < n; i++)
        {
            float ax = MathF.Abs(x[i]);
            if (ax > amax)
            {
                amax = ax;
                max = x[i];
            }
        }
        if (amax < GroupMaxEps)
        {
            levels.Slice(0, n).Clear();
            return 0f;
        }
        float iscale = -nmax / max;
        float sumLX = 0f, sumL2 = 0f;
        for (int i = 0; i < n; i++)
        {
            int l = Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i])));
            levels[i] = (byte)(l + nmax);
            float w = x[i] * x[i];
            sumLX += w * x[i] * l;
            sumL2 += w * l * l;
        }
        float scale = sumL2 != 0f ? sumLX / sumL2 : 0f;
        float best = scale * sumLX;
        for (int step = -9; step <= 9; step++)
        {
            if (step == 0)
                continue;
            iscale = -(nmax + 0.1f * step) / max;
            sumLX = sumL2 = 0f;
            for (int i = 0; i < n; i++)
            {
                int l = Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i])));
                float w = x[i] * x[i];
                sumLX += w * x[i] * l;
                sumL2 += w * l * l;
            }
            if (sumL2 > 0f && sumLX * sumLX > best * sumL2)
            {
                for (int i = 0; i < n; i++)
                    levels[i] = (byte)(nmax + Math.Max(-nmax, Math.Min(nmax - 1, NearestInt(iscale * x[i]))));
                scale = sumLX / sumL2;
                best = scale * sumLX;
            }
        }
        return scale;
    }

    /// <summary>
    /// ggml's nearest_int: adding 1.5·2^23 leaves round(x) (halves to even) in the low mantissa bits. Exact for
    /// |x| ≤ 2^22; beyond that the same bits as the C code.
    /// </summary>
    private static int NearestInt(float value) =>
        (BitConverter.SingleToInt32Bits(value + 12582912f) & 0x007FFFFF) - 0x00400000;

    /// <summary>C's <c>(uint8_t)</c> conversion of a float in range: truncation toward zero.</summary>
    private static int TruncateToUInt8(float value) =>
        float.IsNaN(value) ? 0 : (int)Math.Clamp(MathF.Truncate(value), 0f, 255f);
}
