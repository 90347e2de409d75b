using System;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Llama.Compiled.CompilerServices;

/// <summary>
/// Dot products of one weight row, stored in llama.cpp's block layout as GGUF holds it (see
/// <see cref="BlockQuantization"/>), with activations quantized as llama.cpp quantizes them for that format: Q5_0 with
/// <see cref="BlockKernels.QuantizeBlocks"/> (ggml's q8_0: F16 scales, int sums), Q4_1 and Q5_1 with
/// <see cref="BlockKernels.QuantizeQ8_1"/> (q8_1: F16 scales, the F16 <c>s = d·Σq</c>), Q4_K, Q5_K and Q6_K with
/// <see cref="BlockKernels.QuantizeQ8K"/> (q8_K: F32 scale per 256, sums per 16). Each computes as ggml's
/// <c>ggml_vec_dot_*</c> does — exact integer dot products per (sub-)block, then the float scales — so a result
/// differs from llama.cpp's only by the order of float additions.
/// </summary>
/// <remarks>
/// <para>The <c>...Row4</c> forms take four tokens at once (prefill): token i's activations start at
/// <c>x + i·tokenStride</c>, its scales and sums at <c>+ i·blocks</c> (<c>+ i·superBlocks</c>, bsums
/// <c>+ i·superBlocks·16</c>); each weight is read from memory once for all four.</para>
/// <para>Instruction paths, chosen when the JIT compiles the caller: AVX2 (<c>vpmaddubsw</c>: unsigned weights ×
/// signed activations, which never saturates here since weights ≤ 63 and |activations| ≤ 127), with AVX-VNNI's
/// <c>vpdpbusd</c>/<c>vpdpwssd</c> where present; otherwise portable scalar code. Nothing is checked: the row holds
/// <c>blocks</c> whole blocks and the activations as many values, as the caller's shapes guarantee.</para>
/// </remarks>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class QuantizedRows
{
    // ---------------------------------------------------------------- Q4_1, Q5_0, Q5_1 (blocks of 32)

    /// <summary>Σ w·x over one Q4_1 row of <paramref name="blocks"/> blocks; x as <see cref="BlockKernels.QuantizeQ8_1"/> makes it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q4_1Row(ref byte row, int blocks, ref sbyte x, ref float xScales, ref float xSums) =>
        LegacyRow(WeightFormat.Q4_1, ref row, blocks, ref x, ref xScales, ref Unsafe.As<float, int>(ref xSums));

    /// <summary>Σ w·x for 4 tokens over one Q4_1 row (see <see cref="QuantizedRows"/> for the token layout).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Vector128<float> Q4_1Row4(ref byte row, int blocks, ref sbyte x, ref float xScales, ref float xSums, int tokenStride) =>
        LegacyRow4(WeightFormat.Q4_1, ref row, blocks, ref x, ref xScales, ref Unsafe.As<float, int>(ref xSums), tokenStride);

    /// <summary>Σ w·x over one Q5_0 row of <paramref name="blocks"/> blocks; x as <see cref="BlockKernels.QuantizeBlocks"/> makes it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q5_0Row(ref byte row, int blocks, ref sbyte x, ref float xScales, ref int xSums) =>
        LegacyRow(WeightFormat.Q5_0, ref row, blocks, ref x, ref xScales, ref xSums);

    /// <summary>Σ w·x for 4 tokens over one Q5_0 row (see <see cref="QuantizedRows"/> for the token layout).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Vector128<float> Q5_0Row4(ref byte row, int blocks, ref sbyte x, ref float xScales, ref int xSums, int tokenStride) =>
        LegacyRow4(WeightFormat.Q5_0, ref row, blocks, ref x, ref xScales, ref xSums, tokenStride);

    /// <summary>Σ w·x over one Q5_1 row of <paramref name="blocks"/> blocks; x as <see cref="BlockKernels.QuantizeQ8_1"/> makes it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q5_1Row(ref byte row, int blocks, ref sbyte x, ref float xScales, ref float xSums) =>
        LegacyRow(WeightFormat.Q5_1, ref row, blocks, ref x, ref xScales, ref Unsafe.As<float, int>(ref xSums));

    /// <summary>Σ w·x for 4 tokens over one Q5_1 row (see <see cref="QuantizedRows"/> for the token layout).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Vector128<float> Q5_1Row4(ref byte row, int blocks, ref sbyte x, ref float xScales, ref float xSums, int tokenStride) =>
        LegacyRow4(WeightFormat.Q5_1, ref row, blocks, ref x, ref xScales, ref Unsafe.As<float, int>(ref xSums), tokenStride);

    // Per block: Q4_1/Q5_1 add m·s (s a float, ggml's q8_1 sum); Q5_0 subtracts 16·Σx from the integer dot (Σx an int),
    // which is ggml's Σ(q − 16)·x exactly. `sums` is read as floats or ints accordingly.
    /// <summary>The F16 values in the low 16 bits of each lane as floats, exactly (<see cref="KernelMath.HalfToSingle(Vector128{ushort})"/>'s arithmetic).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<float> HalfBitsToSingle(Vector256<int> half)
    {
        Vector256<int> magnitudeBits = half & Vector256.Create(0x7FFF);
        Vector256<int> magnitude = ((magnitudeBits << 13).AsSingle() * Vector256.Create(5.192297E+33f)).AsInt32(); // · 2^112
        Vector256<int> special = Vector256.GreaterThanOrEqual(magnitudeBits, Vector256.Create(0x7C00)) & Vector256.Create(0x7F800000);
        return (magnitude | special | (half & Vector256.Create(0x8000)) << 16).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static unsafe float LegacyRow(WeightFormat format, ref byte row, int blocks, ref sbyte x, ref float scales, ref int sums)
    {
        int blockBytes = BlockBytes(format);
        if (!Avx2.IsSupported)
            return LegacyRowScalar(format, ref row, blocks, ref x, ref scales, ref sums);
        Vector256<float> acc = Vector256<float>.Zero;
        float offsets = 0f;
        int b = 0;
        if (AvxVnni.IsSupported && blocks >= 8)
        {
            // Eight blocks at a time: their F16 scales (and minimums) gathered and converted in one vector, d·dx kept in a
            // stack buffer for one broadcast load per block, the offsets (m·s, or Q5_0's 16·Σx·d) summed in a vector.
            Vector256<float> offsets8 = Vector256<float>.Zero;
            Vector256<float> blockScales = default;
            Vector256<int> gatherIndex = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) * blockBytes;
            fixed (byte* start = &row)
            {
                for (; b + 8 <= blocks; b += 8)
                {
                    ref byte block0 = ref Unsafe.Add(ref row, b * blockBytes);
                    Vector256<int> halves = Avx2.GatherVector256((int*)(start + b * blockBytes), gatherIndex, 1);
                    Vector256<float> d = HalfBitsToSingle(halves) * Vector256.LoadUnsafe(ref Unsafe.Add(ref scales, b));
                    blockScales = d;
                    if (format == WeightFormat.Q5_0)
                        offsets8 = MulAdd(Vector256.ConvertToSingle(Vector256.LoadUnsafe(ref Unsafe.Add(ref sums, b))), d, offsets8);
                    else
                        offsets8 = MulAdd(HalfBitsToSingle(Vector256.ShiftRightLogical(halves, 16)), Vector256.LoadUnsafe(ref Unsafe.As<int, float>(ref Unsafe.Add(ref sums, b))), offsets8);
                    ref sbyte x0 = ref Unsafe.Add(ref x, b * 32);
                    for (int j = 0; j < 8; j++)
                    {
                        Vector256<int> dot = AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, LegacyWeights(format, ref Unsafe.Add(ref block0, j * blockBytes)), Vector256.LoadUnsafe(ref Unsafe.Add(ref x0, j * 32)));
                        acc = MulAdd(Vector256.ConvertToSingle(dot), Vector256.Create(Unsafe.Add(ref Unsafe.As<Vector256<float>, float>(ref blockScales), j)), acc);
                    }
                }
            }
            offsets = format == WeightFormat.Q5_0 ? -16f * Vector256.Sum(offsets8) : Vector256.Sum(offsets8);
        }
        for (; b < blocks; b++)
        {
            ref byte block = ref Unsafe.Add(ref row, b * blockBytes);
            float d = KernelMath.HalfToSingle(ref block) * Unsafe.Add(ref scales, b);
            Vector256<int> dot = DotU8(LegacyWeights(format, ref block), Vector256.LoadUnsafe(ref Unsafe.Add(ref x, b * 32)));
            if (format == WeightFormat.Q5_0)
                dot -= Vector256.CreateScalar(16 * Unsafe.Add(ref sums, b));
            else
                offsets += KernelMath.HalfToSingle(ref Unsafe.Add(ref block, 2)) * Unsafe.As<int, float>(ref Unsafe.Add(ref sums, b));
            acc = MulAdd(Vector256.ConvertToSingle(dot), Vector256.Create(d), acc);
        }
        return Vector256.Sum(acc) + offsets;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector128<float> LegacyRow4(WeightFormat format, ref byte row, int blocks, ref sbyte x, ref float scales, ref int sums, int tokenStride)
    {
        int blockBytes = BlockBytes(format);
        if (!Avx2.IsSupported)
        {
            return Vector128.Create(
                LegacyRowScalar(format, ref row, blocks, ref x, ref scales, ref sums),
                LegacyRowScalar(format, ref row, blocks, ref Unsafe.Add(ref x, tokenStride), ref Unsafe.Add(ref scales, blocks), ref Unsafe.Add(ref sums, blocks)),
                LegacyRowScalar(format, ref row, blocks, ref Unsafe.Add(ref x, 2 * tokenStride), ref Unsafe.Add(ref scales, 2 * blocks), ref Unsafe.Add(ref sums, 2 * blocks)),
                LegacyRowScalar(format, ref row, blocks, ref Unsafe.Add(ref x, 3 * tokenStride), ref Unsafe.Add(ref scales, 3 * blocks), ref Unsafe.Add(ref sums, 3 * blocks)));
        }
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        Vector128<float> offsets = Vector128<float>.Zero;
        for (int b = 0; b < blocks; b++)
        {
            ref byte block = ref Unsafe.Add(ref row, b * blockBytes);
            float dw = KernelMath.HalfToSingle(ref block);
            Vector256<byte> w = LegacyWeights(format, ref block);
            ref sbyte xb = ref Unsafe.Add(ref x, b * 32);
            Vector256<int> dot0 = DotU8(w, Vector256.LoadUnsafe(ref xb));
            Vector256<int> dot1 = DotU8(w, Vector256.LoadUnsafe(ref Unsafe.Add(ref xb, tokenStride)));
            Vector256<int> dot2 = DotU8(w, Vector256.LoadUnsafe(ref Unsafe.Add(ref xb, 2 * tokenStride)));
            Vector256<int> dot3 = DotU8(w, Vector256.LoadUnsafe(ref Unsafe.Add(ref xb, 3 * tokenStride)));
            if (format == WeightFormat.Q5_0)
            {
                dot0 -= Vector256.CreateScalar(16 * Unsafe.Add(ref sums, b));
                dot1 -= Vector256.CreateScalar(16 * Unsafe.Add(ref sums, b + blocks));
                dot2 -= Vector256.CreateScalar(16 * Unsafe.Add(ref sums, b + 2 * blocks));
                dot3 -= Vector256.CreateScalar(16 * Unsafe.Add(ref sums, b + 3 * blocks));
            }
            else
            {
                ref float s = ref Unsafe.As<int, float>(ref Unsafe.Add(ref sums, b));
                Vector128<float> s4 = Vector128.Create(s, Unsafe.Add(ref s, blocks), Unsafe.Add(ref s, 2 * blocks), Unsafe.Add(ref s, 3 * blocks));
                offsets += s4 * KernelMath.HalfToSingle(ref Unsafe.Add(ref block, 2));
            }
            acc0 = MulAdd(Vector256.ConvertToSingle(dot0), Vector256.Create(dw * Unsafe.Add(ref scales, b)), acc0);
            acc1 = MulAdd(Vector256.ConvertToSingle(dot1), Vector256.Create(dw * Unsafe.Add(ref scales, b + blocks)), acc1);
            acc2 = MulAdd(Vector256.ConvertToSingle(dot2), Vector256.Create(dw * Unsafe.Add(ref scales, b + 2 * blocks)), acc2);
            acc3 = MulAdd(Vector256.ConvertToSingle(dot3), Vector256.Create(dw * Unsafe.Add(ref scales, b + 3 * blocks)), acc3);
        }
        return KernelMath.Sum4(acc0, acc1, acc2, acc3) + offsets;
    }

    /// <summary>A Q4_1/Q5_0/Q5_1 block's 32 weights as unsigned bytes in order (0..15 or 0..31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<byte> LegacyWeights(WeightFormat format, ref byte block)
    {
        // qs is the block's last 16 bytes: low nibbles are weights 0..15, high nibbles 16..31.
        Vector128<byte> qs = Vector128.LoadUnsafe(ref Unsafe.Add(ref block, BlockBytes(format) - 16));
        Vector256<byte> w = Vector256.Create(qs, Vector128.ShiftRightLogical(qs.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0x0F);
        if (format == WeightFormat.Q4_1)
            return w;
        // qh (after d, or after d and m): bit j is weight j's fifth bit. Byte j of the vector takes qh's byte j/8,
        // then tests its bit j%8: OR-ing every other bit in makes the byte all ones exactly when that bit is set.
        uint qh = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref block, format == WeightFormat.Q5_0 ? 2 : 4));
        Vector256<byte> spread = Avx2.Shuffle(Vector256.Create(qh).AsByte(), Vector256.Create(
            (byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        Vector256<byte> set = Vector256.Equals(spread | Vector256.Create(0x7FBFDFEFF7FBFDFEUL).AsByte(), Vector256<byte>.AllBitsSet);
        return w | (set & Vector256.Create((byte)0x10));
    }

    private static float LegacyRowScalar(WeightFormat format, ref byte row, int blocks, ref sbyte x, ref float scales, ref int sums)
    {
        int blockBytes = BlockBytes(format);
        float total = 0f;
        for (int b = 0; b < blocks; b++)
        {
            ref byte block = ref Unsafe.Add(ref row, b * blockBytes);
            ref byte qs = ref Unsafe.Add(ref block, blockBytes - 16);
            uint qh = format == WeightFormat.Q4_1 ? 0u : Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref block, format == WeightFormat.Q5_0 ? 2 : 4));
            ref sbyte xb = ref Unsafe.Add(ref x, b * 32);
            int dot = 0;
            for (int j = 0; j < 16; j++)
            {
                int q0 = (Unsafe.Add(ref qs, j) & 0x0F) | (int)((qh >> j) << 4 & 0x10);
                int q1 = (Unsafe.Add(ref qs, j) >> 4) | (int)((qh >> (j + 12)) & 0x10);
                dot += q0 * Unsafe.Add(ref xb, j) + q1 * Unsafe.Add(ref xb, j + 16);
            }
            float d = KernelMath.HalfToSingle(ref block) * Unsafe.Add(ref scales, b);
            if (format == WeightFormat.Q5_0)
                total += (dot - 16 * Unsafe.Add(ref sums, b)) * d;
            else
                total += dot * d + KernelMath.HalfToSingle(ref Unsafe.Add(ref block, 2)) * Unsafe.As<int, float>(ref Unsafe.Add(ref sums, b));
        }
        return total;
    }

    private static int BlockBytes(WeightFormat format) => format switch
    {
        WeightFormat.Q4_1 => BlockQuantization.Q4_1BlockBytes,
        WeightFormat.Q5_0 => BlockQuantization.Q5_0BlockBytes,
        _ => BlockQuantization.Q5_1BlockBytes,
    };

    // ---------------------------------------------------------------- Q4_K, Q5_K (super-blocks of 256)

    /// <summary>Σ w·x over one Q4_K row of <paramref name="superBlocks"/> super-blocks; x as <see cref="BlockKernels.QuantizeQ8K"/> makes it.</summary>
    public static float Q4_KRow(ref byte row, int superBlocks, ref sbyte x, ref float xScales, ref short xBsums) =>
        Q4_KRow(ref row, superBlocks, ref x, ref xScales, ref xBsums, 0);

    /// <summary>
    /// <see cref="Q4_KRow(ref byte, int, ref sbyte, ref float, ref short)"/> that also prefetches, with each super-block, the
    /// cache lines <paramref name="prefetchBytes"/> ahead of it (none when 0): see <see cref="PrefetchAhead"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q4_KRow(ref byte row, int superBlocks, ref sbyte x, ref float xScales, ref short xBsums, int prefetchBytes) =>
        AvxVnni.IsSupported ? Q45KRowVnni(false, ref row, superBlocks, ref x, ref xScales, ref xBsums, prefetchBytes)
        : Avx2.IsSupported ? Q45KRow(false, ref row, superBlocks, ref x, ref xScales, ref xBsums, prefetchBytes)
            : Q45KRowScalar(false, ref row, superBlocks, ref x, ref xScales, ref xBsums);

    /// <summary>Σ w·x for 4 tokens over one Q4_K row (see <see cref="QuantizedRows"/> for the token layout).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Vector128<float> Q4_KRow4(ref byte row, int superBlocks, ref sbyte x, ref float xScales, ref short xBsums, int tokenStride) =>
        AvxVnni.IsSupported ? Q45KRow4Vnni(false, ref row, superBlocks, ref x, ref xScales, ref xBsums, tokenStride)
        : Avx2.IsSupported ? Q45KRow4(false, ref row, superBlocks, ref x, ref xScales, ref xBsums, tokenStride)
            : KRow4Scalar(WeightFormat.Q4_K, ref row, superBlocks, ref x, ref xScales, ref xBsums, tokenStride);

    /// <summary>Σ w·x over one Q5_K row of <paramref name="superBlocks"/> super-blocks; x as <see cref="BlockKernels.QuantizeQ8K"/> makes it.</summary>
    public static float Q5_KRow(ref byte row, int superBlocks, ref sbyte x, ref float xScales, ref short xBsums) =>
        Q5_KRow(ref row, superBlocks, ref x, ref xScales, ref xBsums, 0);

    /// <summary>
    /// <see cref="Q5_KRow(ref byte, int, ref sbyte, ref float, ref short)"/> that also prefetches, with each super-block, the
    /// cache lines <paramref name="prefetchBytes"/> ahead of it (none when 0): see <see cref="PrefetchAhead"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q5_KRow(ref byte row, int superBlocks, ref sbyte x, ref float xScales, ref short xBsums, int prefetchBytes) =>
        AvxVnni.IsSupported ? Q45KRowVnni(true, ref row, superBlocks, ref x, ref xScales, ref xBsums, prefetchBytes)
        : Avx2.IsSupported ? Q45KRow(true, ref row, superBlocks, ref x, ref xScales, ref xBsums, prefetchBytes)
            : Q45KRowScalar(true, ref row, superBlocks, ref x, ref xScales, ref xBsums);

    /// <summary>Σ w·x for 4 tokens over one Q5_K row (see <see cref="QuantizedRows"/> for the token layout).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Vector128<float> Q5_KRow4(ref byte row, int superBlocks, ref sbyte x, ref float xScales, ref short xBsums, int tokenStride) =>
        AvxVnni.IsSupported ? Q45KRow4Vnni(true, ref row, superBlocks, ref x, ref xScales, ref xBsums, tokenStride)
        : Avx2.IsSupported ? Q45KRow4(true, ref row, superBlocks, ref x, ref xScales, ref xBsums, tokenStride)
            : KRow4Scalar(WeightFormat.Q5_K, ref row, superBlocks, ref x, ref xScales, ref xBsums, tokenStride);

    // The AVX-VNNI form: vpdpbusd gives each 32-weight sub-block's dot in 8 int32 lanes of at most 4·31·127 < 2^15, so
    // two sub-blocks pack into one vector of int16 (vpackssdw, exact) and one vpdpwssd applies both their scales: per 64
    // weights two vpdpbusd, a pack and a vpdpwssd instead of two vpmaddubsw, two scale shuffles and two vpdpwssd.
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Q45KRowVnni(bool five, ref byte row, int superBlocks, ref sbyte x, ref float xScales, ref short xBsums, int prefetchBytes)
    {
        int blockBytes = five ? BlockQuantization.Q5_KBlockBytes : BlockQuantization.Q4_KBlockBytes;
        Vector256<float> acc = Vector256<float>.Zero, accMins = Vector256<float>.Zero;
        ref byte block = ref row;
        for (int sb = 0; sb < superBlocks; sb++, block = ref Unsafe.Add(ref block, blockBytes))
        {
            if (prefetchBytes > 0)
                PrefetchAhead(ref block, prefetchBytes, blockBytes);
            Vector256<byte> scales = ScalesAndMinsK4Pairs(ref Unsafe.Add(ref block, 4));
            ref byte qs = ref Unsafe.Add(ref block, five ? 48 : 16);
            Vector256<ushort> high = five ? Vector256.LoadUnsafe(ref Unsafe.Add(ref block, 16)).AsUInt16() : default;
            ref sbyte xs = ref Unsafe.Add(ref x, sb * 256);
            Vector256<int> sums = PairStep(Vector256<int>.Zero, five, ref qs, ref high, ref xs, scales, 0);
            Vector256<int> sums2 = PairStep(Vector256<int>.Zero, five, ref qs, ref high, ref xs, scales, 1);
            sums = PairStep(sums, five, ref qs, ref high, ref xs, scales, 2);
            sums2 = PairStep(sums2, five, ref qs, ref high, ref xs, scales, 3);
            Vector256<int> mins = Avx2.MultiplyAddAdjacent(Vector256.LoadUnsafe(ref Unsafe.Add(ref xBsums, sb * 16)), Avx2.Shuffle(scales, PairMinsIndex()).AsInt16());
            Vector128<float> dd = KernelMath.HalfToSingle(Vector128.CreateScalar(Unsafe.ReadUnaligned<uint>(ref block)).AsUInt16()).GetLower()
                * Unsafe.Add(ref xScales, sb);
            acc = MulAdd(Vector256.ConvertToSingle(sums + sums2), Avx2.BroadcastScalarToVector256(dd), acc);
            accMins = MulAdd(Vector256.ConvertToSingle(mins), Avx2.BroadcastScalarToVector256(Avx.Permute(dd, 0b01)), accMins);
        }
        return Vector256.Sum(acc - accMins);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector128<float> Q45KRow4Vnni(bool five, ref byte row, int superBlocks, ref sbyte x, ref float xScales, ref short xBsums, int tokenStride)
    {
        int blockBytes = five ? BlockQuantization.Q5_KBlockBytes : BlockQuantization.Q4_KBlockBytes;
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        int bsumStride = superBlocks * 16;
        ref byte block = ref row;
        for (int sb = 0; sb < superBlocks; sb++, block = ref Unsafe.Add(ref block, blockBytes))
        {
            Vector256<byte> scales = ScalesAndMinsK4Pairs(ref Unsafe.Add(ref block, 4));
            ref byte qs = ref Unsafe.Add(ref block, five ? 48 : 16);
            Vector256<ushort> high = five ? Vector256.LoadUnsafe(ref Unsafe.Add(ref block, 16)).AsUInt16() : default;
            ref sbyte xs = ref Unsafe.Add(ref x, sb * 256);
            Vector256<int> s0 = Vector256<int>.Zero, s1 = s0, s2 = s0, s3 = s0;
            PairStep4(ref s0, ref s1, ref s2, ref s3, five, ref qs, ref high, ref xs, tokenStride, scales, 0);
            PairStep4(ref s0, ref s1, ref s2, ref s3, five, ref qs, ref high, ref xs, tokenStride, scales, 1);
            PairStep4(ref s0, ref s1, ref s2, ref s3, five, ref qs, ref high, ref xs, tokenStride, scales, 2);
            PairStep4(ref s0, ref s1, ref s2, ref s3, five, ref qs, ref high, ref xs, tokenStride, scales, 3);
            Vector256<short> mins = Avx2.Shuffle(scales, PairMinsIndex()).AsInt16();
            ref short bsums = ref Unsafe.Add(ref xBsums, sb * 16);
            Vector128<float> dd = KernelMath.HalfToSingle(Vector128.CreateScalar(Unsafe.ReadUnaligned<uint>(ref block)).AsUInt16()).GetLower();
            float d = dd.ToScalar(), dmin = -dd.GetElement(1);
            ref float dx = ref Unsafe.Add(ref xScales, sb);
            acc0 = KAccumulate(acc0, s0, Avx2.MultiplyAddAdjacent(Vector256.LoadUnsafe(ref bsums), mins), d, dmin, dx);
            acc1 = KAccumulate(acc1, s1, Avx2.MultiplyAddAdjacent(Vector256.LoadUnsafe(ref Unsafe.Add(ref bsums, bsumStride)), mins), d, dmin, Unsafe.Add(ref dx, superBlocks));
            acc2 = KAccumulate(acc2, s2, Avx2.MultiplyAddAdjacent(Vector256.LoadUnsafe(ref Unsafe.Add(ref bsums, 2 * bsumStride)), mins), d, dmin, Unsafe.Add(ref dx, 2 * superBlocks));
            acc3 = KAccumulate(acc3, s3, Avx2.MultiplyAddAdjacent(Vector256.LoadUnsafe(ref Unsafe.Add(ref bsums, 3 * bsumStride)), mins), d, dmin, Unsafe.Add(ref dx, 3 * superBlocks));
        }
        return KernelMath.Sum4(acc0, acc1, acc2, acc3);
    }

    /// <summary>acc + the scaled dots of sub-blocks 2k and 2k+1 (qs bytes 32k..32k+32) for one token.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<int> PairStep(Vector256<int> acc, bool five, ref byte qs, ref Vector256<ushort> high, ref sbyte xs, Vector256<byte> scales, int k)
    {
        (Vector256<byte> lo, Vector256<byte> hi) = NibblesK(ref Unsafe.Add(ref qs, 32 * k), five, ref high);
        return PairStep(acc, lo, hi, ref Unsafe.Add(ref xs, 64 * k), Avx2.Shuffle(scales, PairScaleIndex(k)).AsInt16());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static void PairStep4(ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3, bool five, ref byte qs, ref Vector256<ushort> high, ref sbyte xs, int tokenStride, Vector256<byte> scales, int k)
    {
        (Vector256<byte> lo, Vector256<byte> hi) = NibblesK(ref Unsafe.Add(ref qs, 32 * k), five, ref high);
        Vector256<short> sc = Avx2.Shuffle(scales, PairScaleIndex(k)).AsInt16();
        ref sbyte xk = ref Unsafe.Add(ref xs, 64 * k);
        s0 = PairStep(s0, lo, hi, ref xk, sc);
        s1 = PairStep(s1, lo, hi, ref Unsafe.Add(ref xk, tokenStride), sc);
        s2 = PairStep(s2, lo, hi, ref Unsafe.Add(ref xk, 2 * tokenStride), sc);
        s3 = PairStep(s3, lo, hi, ref Unsafe.Add(ref xk, 3 * tokenStride), sc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<int> PairStep(Vector256<int> acc, Vector256<byte> lo, Vector256<byte> hi, ref sbyte x, Vector256<short> scales) =>
        AvxVnni.MultiplyWideningAndAdd(acc, Avx2.PackSignedSaturate(
            AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, lo, Vector256.LoadUnsafe(ref x)),
            AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, hi, Vector256.LoadUnsafe(ref Unsafe.Add(ref x, 32)))), scales);

    /// <summary>
    /// The 12 packed scale bytes as <see cref="ScalesAndMinsK4"/> does, in 64-bit halves: [sc0..3, m0..3, sc4..7, m4..7] in both lanes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<byte> ScalesAndMinsK4Pairs(ref byte packed)
    {
        ulong a = Unsafe.ReadUnaligned<ulong>(ref packed);
        uint u2 = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref packed, 8));
        ulong c = u2 | (ulong)(u2 >> 4) << 32;
        ulong low = a & 0x3F3F3F3F3F3F3F3FUL;
        ulong high = (c & 0x0F0F0F0F0F0F0F0FUL) | ((a >> 2) & 0x3030303030303030UL);
        return Vector256.Create(Vector128.Create(low, high)).AsByte();
    }

    /// <summary>
    /// Shuffle indices for a vpackssdw of sub-blocks 2k and 2k+1 (per 128-bit lane: four int16 of 2k, four of 2k+1): sc_2k four
    /// times then sc_2k+1, zero-extended, from <see cref="ScalesAndMinsK4Pairs"/>'s layout (sc_j at byte j for j &lt; 4, j + 4 above).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<byte> PairScaleIndex(int k)
    {
        byte a = (byte)(2 * k < 4 ? 2 * k : 2 * k + 4), b = (byte)(a + 1);
        return Vector256.Create(a, 0x80, a, 0x80, a, 0x80, a, 0x80, b, 0x80, b, 0x80, b, 0x80, b, 0x80,
            a, 0x80, a, 0x80, a, 0x80, a, 0x80, b, 0x80, b, 0x80, b, 0x80, b, 0x80);
    }

    /// <summary>[m0, m0, m1, m1, ..., m7, m7] as zero-extended int16 from <see cref="ScalesAndMinsK4Pairs"/>'s layout (m_j at 4 + j, j + 8 above 3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<byte> PairMinsIndex() => Vector256.Create(
        (byte)4, 0x80, 4, 0x80, 5, 0x80, 5, 0x80, 6, 0x80, 6, 0x80, 7, 0x80, 7, 0x80,
        12, 0x80, 12, 0x80, 13, 0x80, 13, 0x80, 14, 0x80, 14, 0x80, 15, 0x80, 15, 0x80);

    // Per super-block: d·dx·Σ_j sc_j·(q·x)_j − dmin·dx·Σ_j m_j·(bsum_2j + bsum_2j+1), the integer sums exact as ggml's.
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static float Q45KRow(bool five, ref byte row, int superBlocks, ref sbyte x, ref float xScales, ref short xBsums, int prefetchBytes)
    {
        int blockBytes = five ? BlockQuantization.Q5_KBlockBytes : BlockQuantization.Q4_KBlockBytes;
        Vector256<float> acc = Vector256<float>.Zero;
        for (int sb = 0; sb < superBlocks; sb++)
        {
            ref byte block = ref Unsafe.Add(ref row, sb * blockBytes);
            if (prefetchBytes > 0)
                PrefetchAhead(ref block, prefetchBytes, blockBytes);
            Vector256<byte> scales = ScalesAndMinsK4(ref Unsafe.Add(ref block, 4));
            ref byte qs = ref Unsafe.Add(ref block, five ? 48 : 16);
            Vector256<ushort> high = five ? Vector256.LoadUnsafe(ref Unsafe.Add(ref block, 16)).AsUInt16() : default;
            ref sbyte xs = ref Unsafe.Add(ref x, sb * 256);
            Vector256<byte> scaleIndex = Vector256.Create(unchecked((short)0x8000)).AsByte(); // [j, 0x80] per short: sc_j zero-extended
            Vector256<int> even = Vector256<int>.Zero, odd = Vector256<int>.Zero;
            for (int k = 0; k < 4; k++)
            {
                (Vector256<byte> lo, Vector256<byte> hi) = NibblesK(ref Unsafe.Add(ref qs, 32 * k), five, ref high);
                even = MulAddPairs(even, Avx2.MultiplyAddAdjacent(lo, Vector256.LoadUnsafe(ref Unsafe.Add(ref xs, 64 * k))), Avx2.Shuffle(scales, scaleIndex).AsInt16());
                scaleIndex += Vector256.Create((byte)1);
                odd = MulAddPairs(odd, Avx2.MultiplyAddAdjacent(hi, Vector256.LoadUnsafe(ref Unsafe.Add(ref xs, 64 * k + 32))), Avx2.Shuffle(scales, scaleIndex).AsInt16());
                scaleIndex += Vector256.Create((byte)1);
            }
            Vector256<int> mins = Avx2.MultiplyAddAdjacent(Vector256.LoadUnsafe(ref Unsafe.Add(ref xBsums, sb * 16)), Avx2.Shuffle(scales, MinsIndex()).AsInt16());
            float dx = Unsafe.Add(ref xScales, sb);
            acc = MulAdd(Vector256.ConvertToSingle(even + odd), Vector256.Create(KernelMath.HalfToSingle(ref block) * dx), acc);
            acc = MulAdd(Vector256.ConvertToSingle(mins), Vector256.Create(-KernelMath.HalfToSingle(ref Unsafe.Add(ref block, 2)) * dx), acc);
        }
        return Vector256.Sum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector128<float> Q45KRow4(bool five, ref byte row, int superBlocks, ref sbyte x, ref float xScales, ref short xBsums, int tokenStride)
    {
        int blockBytes = five ? BlockQuantization.Q5_KBlockBytes : BlockQuantization.Q4_KBlockBytes;
        Vector256<float> acc0 = Vector256<float>.Zero, acc1 = acc0, acc2 = acc0, acc3 = acc0;
        int bsumStride = superBlocks * 16;
        for (int sb = 0; sb < superBlocks; sb++)
        {
            ref byte block = ref Unsafe.Add(ref row, sb * blockBytes);
            Vector256<byte> scales = ScalesAndMinsK4(ref Unsafe.Add(ref block, 4));
            ref byte qs = ref Unsafe.Add(ref block, five ? 48 : 16);
            Vector256<ushort> high = five ? Vector256.LoadUnsafe(ref Unsafe.Add(ref block, 16)).AsUInt16() : default;
            ref sbyte xs = ref Unsafe.Add(ref x, sb * 256);
            Vector256<byte> scaleIndex = Vector256.Create(unchecked((short)0x8000)).AsByte();
            Vector256<int> s0 = Vector256<int>.Zero, s1 = s0, s2 = s0, s3 = s0;
            for (int k = 0; k < 4; k++)
            {
                (Vector256<byte> lo, Vector256<byte> hi) = NibblesK(ref Unsafe.Add(ref qs, 32 * k), five, ref high);
                Vector256<short> scLo = Avx2.Shuffle(scales, scaleIndex).AsInt16();
                scaleIndex += Vector256.Create((byte)1);
                Vector256<short> scHi = Avx2.Shuffle(scales, scaleIndex).AsInt16();
                scaleIndex += Vector256.Create((byte)1);
                ref sbyte xk = ref Unsafe.Add(ref xs, 64 * k);
                s0 = MulAddPairs(s0, Avx2.MultiplyAddAdjacent(lo, Vector256.LoadUnsafe(ref xk)), scLo);
                s1 = MulAddPairs(s1, Avx2.MultiplyAddAdjacent(lo, Vector256.LoadUnsafe(ref Unsafe.Add(ref xk, tokenStride))), scLo);
                s2 = MulAddPairs(s2, Avx2.MultiplyAddAdjacent(lo, Vector256.LoadUnsafe(ref Unsafe.Add(ref xk, 2 * tokenStride))), scLo);
                s3 = MulAddPairs(s3, Avx2.MultiplyAddAdjacent(lo, Vector256.LoadUnsafe(ref Unsafe.Add(ref xk, 3 * tokenStride))), scLo);
                xk = ref Unsafe.Add(ref xk, 32);
                s0 = MulAddPairs(s0, Avx2.MultiplyAddAdjacent(hi, Vector256.LoadUnsafe(ref xk)), scHi);
                s1 = MulAddPairs(s1, Avx2.MultiplyAddAdjacent(hi, Vector256.LoadUnsafe(ref Unsafe.Add(ref xk, tokenStride))), scHi);
                s2 = MulAddPairs(s2, Avx2.MultiplyAddAdjacent(hi, Vector256.LoadUnsafe(ref Unsafe.Add(ref xk, 2 * tokenStride))), scHi);
                s3 = MulAddPairs(s3, Avx2.MultiplyAddAdjacent(hi, Vector256.LoadUnsafe(ref Unsafe.Add(ref xk, 3 * tokenStride))), scHi);
            }
            Vector256<short> mins = Avx2.Shuffle(scales, MinsIndex()).AsInt16();
            ref short bsums = ref Unsafe.Add(ref xBsums, sb * 16);
            float d = KernelMath.HalfToSingle(ref block), dmin = -KernelMath.HalfToSingle(ref Unsafe.Add(ref block, 2));
            ref float dx = ref Unsafe.Add(ref xScales, sb);
            acc0 = KAccumulate(acc0, s0, Avx2.MultiplyAddAdjacent(Vector256.LoadUnsafe(ref bsums), mins), d, dmin, dx);
            acc1 = KAccumulate(acc1, s1, Avx2.MultiplyAddAdjacent(Vector256.LoadUnsafe(ref Unsafe.Add(ref bsums, bsumStride)), mins), d, dmin, Unsafe.Add(ref dx, superBlocks));
            acc2 = KAccumulate(acc2, s2, Avx2.MultiplyAddAdjacent(Vector256.LoadUnsafe(ref Unsafe.Add(ref bsums, 2 * bsumStride)), mins), d, dmin, Unsafe.Add(ref dx, 2 * superBlocks));
            acc3 = KAccumulate(acc3, s3, Avx2.MultiplyAddAdjacent(Vector256.LoadUnsafe(ref Unsafe.Add(ref bsums, 3 * bsumStride)), mins), d, dmin, Unsafe.Add(ref dx, 3 * superBlocks));
        }
        return KernelMath.Sum4(acc0, acc1, acc2, acc3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<float> KAccumulate(Vector256<float> acc, Vector256<int> sums, Vector256<int> mins, float d, float negativeDmin, float dx) =>
        MulAdd(Vector256.ConvertToSingle(mins), Vector256.Create(negativeDmin * dx), MulAdd(Vector256.ConvertToSingle(sums), Vector256.Create(d * dx), acc));

    /// <summary>
    /// A Q4_K/Q5_K super-block's 12 bytes of packed 6-bit scales and mins as [sc0..sc7, m0..m7] in both 128-bit lanes
    /// (ggml's get_scale_min_k4 for all eight sub-blocks at once, on three 32-bit words).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<byte> ScalesAndMinsK4(ref byte packed)
    {
        uint u0 = Unsafe.ReadUnaligned<uint>(ref packed), u1 = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref packed, 4)), u2 = Unsafe.ReadUnaligned<uint>(ref Unsafe.Add(ref packed, 8));
        // Sub-blocks 0..3 are the low 6 bits of bytes 0..3 (scales) and 4..7 (mins); 4..7 take their low 4 bits from
        // bytes 8..11 (scale low nibble, min high nibble) and their top 2 bits from the top bits of bytes 0..3 / 4..7.
        Vector128<uint> v = Vector128.Create(
            u0 & 0x3F3F3F3F,
            (u2 & 0x0F0F0F0F) | ((u0 >> 6) & 0x03030303) << 4,
            u1 & 0x3F3F3F3F,
            ((u2 >> 4) & 0x0F0F0F0F) | ((u1 >> 6) & 0x03030303) << 4);
        return Vector256.Create(v, v).AsByte();
    }

    /// <summary>Shuffle indices taking [m0, m0, m1, m1, ..., m7, m7] as shorts from <see cref="ScalesAndMinsK4"/>: bsums come per 16 values, mins per 32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<byte> MinsIndex() => Vector256.Create(
        (byte)8, 0x80, 8, 0x80, 9, 0x80, 9, 0x80, 10, 0x80, 10, 0x80, 11, 0x80, 11, 0x80,
        12, 0x80, 12, 0x80, 13, 0x80, 13, 0x80, 14, 0x80, 14, 0x80, 15, 0x80, 15, 0x80);

    /// <summary>
    /// 32 bytes of a Q4_K/Q5_K super-block's qs as the weights of its two sub-blocks (low nibbles, high nibbles), with
    /// Q5_K's fifth bits taken from bits 0 and 1 of <paramref name="high"/>'s bytes, which then moves on by two bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static (Vector256<byte> Low, Vector256<byte> High) NibblesK(ref byte qs, bool five, ref Vector256<ushort> high)
    {
        Vector256<byte> q = Vector256.LoadUnsafe(ref qs);
        Vector256<byte> mask = Vector256.Create((byte)0x0F);
        Vector256<byte> lo = q & mask, hi = Vector256.ShiftRightLogical(q.AsUInt16(), 4).AsByte() & mask;
        if (five)
        {
            // Shifting 16-bit lanes left by 4 puts each byte's bit 0 at its bit 4 (and bit 1 at bit 4 after one more).
            Vector256<byte> bit4 = Vector256.Create((byte)0x10);
            lo |= Vector256.ShiftLeft(high, 4).AsByte() & bit4;
            hi |= Vector256.ShiftLeft(high, 3).AsByte() & bit4;
            high = Vector256.ShiftRightLogical(high, 2); // within 6 shifts no bit of the upper byte reaches bit 0 or 1 of the lower
        }
        return (lo, hi);
    }

    private static float Q45KRowScalar(bool five, ref byte row, int superBlocks, ref sbyte x, ref float xScales, ref short xBsums)
    {
        int blockBytes = five ? BlockQuantization.Q5_KBlockBytes : BlockQuantization.Q4_KBlockBytes;
        float total = 0f;
        for (int sb = 0; sb < superBlocks; sb++)
        {
            ref byte block = ref Unsafe.Add(ref row, sb * blockBytes);
            ReadOnlySpan<byte> packed = MemoryMarshal.CreateReadOnlySpan(ref Unsafe.Add(ref block, 4), 12);
            ref byte qs = ref Unsafe.Add(ref block, five ? 48 : 16);
            ref sbyte xs = ref Unsafe.Add(ref x, sb * 256);
            ref short bsums = ref Unsafe.Add(ref xBsums, sb * 16);
            int sums = 0, mins = 0;
            for (int j = 0; j < 8; j++)
            {
                (int sc, int m) = BlockQuantization.ScaleMinK4(j, packed);
                int dot = 0;
                for (int l = 0; l < 32; l++)
                {
                    int q = Unsafe.Add(ref qs, 32 * (j / 2) + l) >> (4 * (j % 2)) & 0xF;
                    if (five)
                        q |= (Unsafe.Add(ref block, 16 + l) >> j & 1) << 4;
                    dot += q * Unsafe.Add(ref xs, 32 * j + l);
                }
                sums += sc * dot;
                mins += m * (Unsafe.Add(ref bsums, 2 * j) + Unsafe.Add(ref bsums, 2 * j + 1));
            }
            float dx = Unsafe.Add(ref xScales, sb);
            total += KernelMath.HalfToSingle(ref block) * dx * sums - KernelMath.HalfToSingle(ref Unsafe.Add(ref block, 2)) * dx * mins;
        }
        return total;
    }

    private static Vector128<float> KRow4Scalar(WeightFormat format, ref byte row, int superBlocks, ref sbyte x, ref float xScales, ref short xBsums, int tokenStride)
    {
        Span<float> results = stackalloc float[4];
        for (int t = 0; t < 4; t++)
        {
            ref sbyte xt = ref Unsafe.Add(ref x, t * tokenStride);
            ref float st = ref Unsafe.Add(ref xScales, t * superBlocks);
            ref short bt = ref Unsafe.Add(ref xBsums, t * superBlocks * 16);
            results[t] = Q45KRowScalar(format == WeightFormat.Q5_K, ref row, superBlocks, ref xt, ref st, ref bt);
        }
        return Vector128.Create(results[0], results[1], results[2], results[3]);
    }

    // ---------------------------------------------------------------- Q6_K (super-blocks of 256)

    /// <summary>Σ w·x over one Q6_K row of <paramref name="superBlocks"/> super-blocks; x as <see cref="BlockKernels.QuantizeQ8K"/> makes it.</summary>
    public static float Q6_KRow(ref byte row, int superBlocks, ref sbyte x, ref float xScales, ref short xBsums) =>
        Q6_KRow(ref row, superBlocks, ref x, ref xScales, ref xBsums, 0);

    /// <summary>
    /// <see cref="Q6_KRow(ref byte, int, ref sbyte, ref float, ref short)"/> that also prefetches, with each super-block, the
    /// cache lines <paramref name="prefetchBytes"/> ahead of it (none when 0): see <see cref="PrefetchAhead"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Q6_KRow(ref byte row, int superBlocks, ref sbyte x, ref float xScales, ref short xBsums, int prefetchBytes)
    {
        if (!Avx2.IsSupported)
            return Q6KRowScalar(ref row, superBlocks, ref x, ref xScales, ref xBsums);
        float acc = 0f;
        // The shuffles' indices, built once: the JIT does not hoist them out of the loop (4 instructions each per use).
        Vector256<byte> pair0 = PairScaleIndex6(0), pair1 = PairScaleIndex6(1), run0 = ScaleIndex6(0), run1 = ScaleIndex6(1), run2 = ScaleIndex6(2), run3 = ScaleIndex6(3);
        for (int sb = 0; sb < superBlocks; sb++)
        {
            ref byte block = ref Unsafe.Add(ref row, sb * BlockQuantization.Q6_KBlockBytes);
            if (prefetchBytes > 0)
                PrefetchAhead(ref block, prefetchBytes, BlockQuantization.Q6_KBlockBytes);
            Vector256<short> scales = Avx2.ConvertToVector256Int16(Vector128.LoadUnsafe(ref Unsafe.As<byte, sbyte>(ref Unsafe.Add(ref block, 192))));
            ref sbyte xs = ref Unsafe.Add(ref x, sb * 256);
            Vector256<int> sums = Vector256<int>.Zero, sums2 = Vector256<int>.Zero;
            for (int half = 0; half < 2; half++)
            {
                // The half's 8 scales in both lanes; ScaleIndex6(v) picks scale 2v (low lane) and 2v+1 (high lane).
                Vector256<byte> halfScales = half == 0 ? Avx2.Permute2x128(scales, scales, 0x00).AsByte() : Avx2.Permute2x128(scales, scales, 0x11).AsByte();
                (Vector256<byte> q0, Vector256<byte> q1, Vector256<byte> q2, Vector256<byte> q3) = Weights6(ref Unsafe.Add(ref block, 64 * half), ref Unsafe.Add(ref block, 128 + 32 * half));
                ref sbyte xh = ref Unsafe.Add(ref xs, 128 * half);
                if (AvxVnni.IsSupported)
                {
                    // As Q4_K's VNNI form: a run's 4-weight dots are at most 4·63·127 < 2^15, so two runs pack into int16
                    // (vpackssdw, exact) and one vpdpwssd applies their four scales.
                    sums = AvxVnni.MultiplyWideningAndAdd(sums, PackedRuns(q0, q1, ref xh), Avx2.Shuffle(halfScales, pair0).AsInt16());
                    sums2 = AvxVnni.MultiplyWideningAndAdd(sums2, PackedRuns(q2, q3, ref Unsafe.Add(ref xh, 64)), Avx2.Shuffle(halfScales, pair1).AsInt16());
                    continue;
                }
                sums = MulAddPairs(sums, Avx2.MultiplyAddAdjacent(q0, Vector256.LoadUnsafe(ref xh)), Avx2.Shuffle(halfScales, run0).AsInt16());
                sums2 = MulAddPairs(sums2, Avx2.MultiplyAddAdjacent(q1, Vector256.LoadUnsafe(ref Unsafe.Add(ref xh, 32))), Avx2.Shuffle(halfScales, run1).AsInt16());
                sums = MulAddPairs(sums, Avx2.MultiplyAddAdjacent(q2, Vector256.LoadUnsafe(ref Unsafe.Add(ref xh, 64))), Avx2.Shuffle(halfScales, run2).AsInt16());
                sums2 = MulAddPairs(sums2, Avx2.MultiplyAddAdjacent(q3, Vector256.LoadUnsafe(ref Unsafe.Add(ref xh, 96))), Avx2.Shuffle(halfScales, run3).AsInt16());
            }
            // The weights were taken as q + 32 (unsigned): subtract 32·Σ_j sc_j·bsum_j, ggml's integer sum exactly.
            Vector256<int> offset = Avx2.MultiplyAddAdjacent(scales, Vector256.LoadUnsafe(ref Unsafe.Add(ref xBsums, sb * 16)));
            // The super-block's integer sum, exact, then one fused multiply-add: the float operations of the generated prefill
            // tiles (over Q6KGroups), so that a prompt's prefill and its token-by-token decode round alike.
            int total = Vector256.Sum(sums + sums2 - Vector256.ShiftLeft(offset, 5));
            acc = MathF.FusedMultiplyAdd(total, KernelMath.HalfToSingle(ref Unsafe.Add(ref block, 208)) * Unsafe.Add(ref xScales, sb), acc);
        }
        return acc;
    }

    /// <summary>
    /// Half a Q6_K super-block (ql: 64 bytes, qh: 32) as its four runs of 32 weights, each q + 32 in 0..63: run 0 the low
    /// nibbles of ql[0..32) with qh bits 0-1 above them, run 1 ql[32..64) low with bits 2-3, run 2 ql[0..32) high with
    /// bits 4-5, run 3 ql[32..64) high with bits 6-7.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    internal static (Vector256<byte>, Vector256<byte>, Vector256<byte>, Vector256<byte>) Weights6(ref byte ql, ref byte qhBytes)
    {
        Vector256<byte> low = Vector256.LoadUnsafe(ref ql), low2 = Vector256.LoadUnsafe(ref Unsafe.Add(ref ql, 32));
        Vector256<ushort> qh = Vector256.LoadUnsafe(ref qhBytes).AsUInt16();
        Vector256<byte> nibble = Vector256.Create((byte)0x0F), bits45 = Vector256.Create((byte)0x30);
        // Shifts of 16-bit lanes: the mask keeps only bits that came from the same byte.
        Vector256<byte> q0 = (low & nibble) | (Vector256.ShiftLeft(qh, 4).AsByte() & bits45);
        Vector256<byte> q1 = (low2 & nibble) | (Vector256.ShiftLeft(qh, 2).AsByte() & bits45);
        Vector256<byte> q2 = (Vector256.ShiftRightLogical(low.AsUInt16(), 4).AsByte() & nibble) | (qh.AsByte() & bits45);
        Vector256<byte> q3 = (Vector256.ShiftRightLogical(low2.AsUInt16(), 4).AsByte() & nibble) | (Vector256.ShiftRightLogical(qh, 2).AsByte() & bits45);
        return (q0, q1, q2, q3);
    }

    /// <summary>Shuffle indices for run <paramref name="run"/> of a half: short 2·run in the low lane, 2·run+1 in the high lane, of 8 scales held in both lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<byte> ScaleIndex6(int run)
    {
        byte a = (byte)(4 * run), b = (byte)(4 * run + 2);
        return Vector256.Create(
            Vector128.Create(a, (byte)(a + 1), a, (byte)(a + 1), a, (byte)(a + 1), a, (byte)(a + 1), a, (byte)(a + 1), a, (byte)(a + 1), a, (byte)(a + 1), a, (byte)(a + 1)),
            Vector128.Create(b, (byte)(b + 1), b, (byte)(b + 1), b, (byte)(b + 1), b, (byte)(b + 1), b, (byte)(b + 1), b, (byte)(b + 1), b, (byte)(b + 1), b, (byte)(b + 1)));
    }

    /// <summary>The 4-weight dots of runs a (x[0..32)) and b (x[32..64)) packed to int16: per lane, four of a's, then four of b's.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<short> PackedRuns(Vector256<byte> a, Vector256<byte> b, ref sbyte x) =>
        Avx2.PackSignedSaturate(
            AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, a, Vector256.LoadUnsafe(ref x)),
            AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, b, Vector256.LoadUnsafe(ref Unsafe.Add(ref x, 32))));

    /// <summary>
    /// Shuffle indices for <see cref="PackedRuns"/> of runs 2p and 2p+1 of a half (8 int16 scales in both lanes; run v
    /// takes scale 2v in the low lane, 2v+1 in the high): low lane [s_4p ×4, s_4p+2 ×4], high lane [s_4p+1 ×4, s_4p+3 ×4].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<byte> PairScaleIndex6(int p)
    {
        ushort a = (ushort)(8 * p | (8 * p + 1) << 8), c = (ushort)(a + 0x0404), b = (ushort)(a + 0x0202), d = (ushort)(a + 0x0606);
        return Vector256.Create(
            Vector128.Create(a, a, a, a, c, c, c, c).AsByte(),
            Vector128.Create(b, b, b, b, d, d, d, d).AsByte());
    }

    private static float Q6KRowScalar(ref byte row, int superBlocks, ref sbyte x, ref float xScales, ref short xBsums)
    {
        float total = 0f;
        for (int sb = 0; sb < superBlocks; sb++)
        {
            ref byte block = ref Unsafe.Add(ref row, sb * BlockQuantization.Q6_KBlockBytes);
            ref sbyte xs = ref Unsafe.Add(ref x, sb * 256);
            int sums = 0;
            for (int i = 0; i < 256; i++)
            {
                int half = i / 128, l = i % 32, run = i % 128 / 32;
                int ql = Unsafe.Add(ref block, 64 * half + l + (run % 2) * 32) >> (4 * (run / 2)) & 0xF;
                int qh = Unsafe.Add(ref block, 128 + 32 * half + l) >> (2 * run) & 3;
                sums += (sbyte)Unsafe.Add(ref block, 192 + i / 16) * (ql | qh << 4) * Unsafe.Add(ref xs, i);
            }
            // The weights were taken as q + 32: subtract 32·Σ_j sc_j·bsum_j, as the vector path and ggml's AVX2 code do.
            for (int j = 0; j < 16; j++)
                sums -= 32 * (sbyte)Unsafe.Add(ref block, 192 + j) * Unsafe.Add(ref xBsums, sb * 16 + j);
            total = MathF.FusedMultiplyAdd(sums, KernelMath.HalfToSingle(ref Unsafe.Add(ref block, 208)) * Unsafe.Add(ref xScales, sb), total);
        }
        return total;
    }

    // ---------------------------------------------------------------- shared instructions

    /// <summary>
    /// Prefetches the cache lines of [block + ahead, block + ahead + blockBytes): called once per (super-)block, it keeps
    /// the requests of a streaming row spread over its computation, a few lines at a time, where one burst of a whole
    /// row's lines before it fills the core's miss buffers and stalls the arithmetic behind them. A hint only, and
    /// prefetching past the weights' end does not fault.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static unsafe void PrefetchAhead(ref byte block, int ahead, int blockBytes)
    {
        if (!Sse.IsSupported)
            return;
        byte* p = (byte*)Unsafe.AsPointer(ref block) + ahead;
        for (int offset = 0; offset < blockBytes; offset += 64)
            Sse.Prefetch0(p + offset);
    }

    /// <summary>Σ of 4 adjacent products of unsigned <paramref name="w"/> and signed <paramref name="x"/> bytes, in 8 int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<int> DotU8(Vector256<byte> w, Vector256<sbyte> x) =>
        AvxVnni.IsSupported ? AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, w, x)
            : Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(w, x), Vector256<short>.One);

    /// <summary><paramref name="acc"/> + the pairwise products p·s summed into 8 int32 lanes (<c>vpdpwssd</c>, or <c>vpmaddwd</c> and an add).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<int> MulAddPairs(Vector256<int> acc, Vector256<short> p, Vector256<short> s) =>
        AvxVnni.IsSupported ? AvxVnni.MultiplyWideningAndAdd(acc, p, s) : acc + Avx2.MultiplyAddAdjacent(p, s);

    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static Vector256<float> MulAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) =>
        Fma.IsSupported ? Fma.MultiplyAdd(a, b, c) : a * b + c;
}
