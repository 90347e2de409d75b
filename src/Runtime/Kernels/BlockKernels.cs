using System;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Llama.Compiled.CompilerServices;

/// <summary>
/// The shape-agnostic pieces of the generated Q8_0/Q4_0 kernels: quantizing activations to int8 blocks as llama.cpp
/// does for its Q8_0 dot products, and the byte dot product of the kernel layout's 8 interleaved rows. The generated
/// row products inline them into their loops (<see cref="MethodImplOptions.AggressiveInlining"/>, across assemblies
/// for the JIT and NativeAOT alike); each chooses its instructions when the JIT compiles its caller.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class BlockKernels
{
    /// <summary>Values per block.</summary>
    public const int BlockSize = 32;

    /// <summary>
    /// x → int8 blocks of 32 with one scale each, as llama.cpp quantizes activations for Q8_0 dot products
    /// (<c>quantize_row_q8_0</c>): scale = max|x|/127 (kept as F16), q = round(x/scale); and each block's Σq, which the
    /// kernels subtract for the offset the weights are stored with. x: [n], q: [n], scales, sums: [n/32].
    /// </summary>
    /// <exception cref="ArgumentException">x is not whole blocks, or an output is shorter than x needs.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeBlocks(ReadOnlySpan<float> x, Span<sbyte> q, Span<float> scales, Span<int> sums)
    {
        if (x.Length % BlockSize != 0 || q.Length < x.Length || scales.Length < x.Length / BlockSize || sums.Length < x.Length / BlockSize)
            throw new ArgumentException("QuantizeBlocks: a buffer is smaller than its shape.");
        ref float x0 = ref MemoryMarshal.GetReference(x);
        ref sbyte q0 = ref MemoryMarshal.GetReference(q);
        ref float scales0 = ref MemoryMarshal.GetReference(scales);
        ref int sums0 = ref MemoryMarshal.GetReference(sums);
        for (int b = 0; b < x.Length / BlockSize; b++)
        {
            ref float xb = ref Unsafe.Add(ref x0, b * BlockSize);
            Unsafe.Add(ref scales0, b) = QuantizeBlock(Vector256.LoadUnsafe(ref xb), Vector256.LoadUnsafe(ref xb, 8), Vector256.LoadUnsafe(ref xb, 16), Vector256.LoadUnsafe(ref xb, 24),
                ref Unsafe.Add(ref q0, b * BlockSize), out Unsafe.Add(ref sums0, b));
        }
    }

    /// <summary>
    /// One block of 32 floats (v0..v3) → 32 int8 at <paramref name="q"/> and their sum; returns the block's scale,
    /// max|v|/127 rounded to F16 (0 for a block of zeros, whose values are all 0).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static float QuantizeBlock(Vector256<float> v0, Vector256<float> v1, Vector256<float> v2, Vector256<float> v3, ref sbyte q, out int sum) =>
        (float)(Half)(QuantizeBlockMax(v0, v1, v2, v3, ref q, out sum) / 127f);

    /// <summary>
    /// x → int8 blocks of 32 as llama.cpp's x86 <c>quantize_row_q8_1</c> (the activations of its Q4_1 and Q5_1 dot
    /// products): the same int8 values and F16 scales as <see cref="QuantizeBlocks"/>, and per block ggml's
    /// <c>s = fp16(d·Σq)</c> with the unrounded F32 <c>d = max|x|/127</c>. (Computing s from the F16-rounded scale
    /// instead differs from ggml in the last F16 bit for some blocks.) x: [n], q: [n], scales, sums: [n/32].
    /// </summary>
    /// <exception cref="ArgumentException">x is not whole blocks, or an output is shorter than x needs.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeQ8_1(ReadOnlySpan<float> x, Span<sbyte> q, Span<float> scales, Span<float> sums)
    {
        if (x.Length % BlockSize != 0 || q.Length < x.Length || scales.Length < x.Length / BlockSize || sums.Length < x.Length / BlockSize)
            throw new ArgumentException("QuantizeQ8_1: a buffer is smaller than its shape.");
        ref float x0 = ref MemoryMarshal.GetReference(x);
        ref sbyte q0 = ref MemoryMarshal.GetReference(q);
        for (int b = 0; b < x.Length / BlockSize; b++)
        {
            ref float xb = ref Unsafe.Add(ref x0, b * BlockSize);
            float max = QuantizeBlockMax(Vector256.LoadUnsafe(ref xb), Vector256.LoadUnsafe(ref xb, 8), Vector256.LoadUnsafe(ref xb, 16), Vector256.LoadUnsafe(ref xb, 24),
                ref Unsafe.Add(ref q0, b * BlockSize), out int sum);
            float d = max / 127f;
            scales[b] = (float)(Half)d;
            sums[b] = (float)(Half)(d * sum);
        }
    }

    /// <summary>Weights per block of Q8_K (a super-block of the K formats).</summary>
    public const int SuperBlockSize = 256;

    /// <summary>
    /// x → int8 super-blocks of 256 as llama.cpp quantizes activations for its K-format dot products
    /// (<c>quantize_row_q8_K</c>, on x86 the reference): with <c>max</c> the first value of largest magnitude,
    /// <c>iscale = −127/max</c>, q = min(127, nearest_int(iscale·x)) (halves to even), <c>d = 1/iscale</c> as F32,
    /// and the sums of each 16 consecutive q. A block of zeros gets d = 0, q = 0 and sums 0.
    /// x: [n] with n a multiple of 256, q: [n], scales: [n/256], bsums: [n/16].
    /// </summary>
    /// <exception cref="ArgumentException">x is not whole super-blocks, or an output is shorter than x needs.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeQ8K(ReadOnlySpan<float> x, Span<sbyte> q, Span<float> scales, Span<short> bsums)
    {
        if (x.Length % SuperBlockSize != 0 || q.Length < x.Length || scales.Length < x.Length / SuperBlockSize || bsums.Length < x.Length / 16)
            throw new ArgumentException("QuantizeQ8K: a buffer is smaller than its shape.");
        ref float x0 = ref MemoryMarshal.GetReference(x);
        ref sbyte q0 = ref MemoryMarshal.GetReference(q);
        ref short s0 = ref MemoryMarshal.GetReference(bsums);
        for (int b = 0; b < x.Length / SuperBlockSize; b++)
        {
            ref float xb = ref Unsafe.Add(ref x0, b * SuperBlockSize);
            Vector256<float> amax8 = Vector256<float>.Zero;
            for (int i = 0; i < SuperBlockSize; i += 8)
                amax8 = Vector256.Max(amax8, Vector256.Abs(Vector256.LoadUnsafe(ref xb, (nuint)i)));
            Vector128<float> amax4 = Vector128.Max(amax8.GetLower(), amax8.GetUpper());
            float amax = MathF.Max(MathF.Max(amax4[0], amax4[1]), MathF.Max(amax4[2], amax4[3]));
            if (amax == 0f)
            {
                scales[b] = 0f;
                Unsafe.InitBlockUnaligned(ref Unsafe.As<sbyte, byte>(ref Unsafe.Add(ref q0, b * SuperBlockSize)), 0, SuperBlockSize);
                Unsafe.InitBlockUnaligned(ref Unsafe.As<short, byte>(ref Unsafe.Add(ref s0, b * 16)), 0, 32);
                continue;
            }
            // The sign of the first value of largest magnitude decides which end maps to −127 (ggml keeps the first on ties).
            float max = 0f;
            for (int i = 0; i < SuperBlockSize; i += 8)
            {
                uint hits = Vector256.Equals(Vector256.Abs(Vector256.LoadUnsafe(ref xb, (nuint)i)), Vector256.Create(amax)).ExtractMostSignificantBits();
                if (hits != 0)
                {
                    max = Unsafe.Add(ref xb, i + System.Numerics.BitOperations.TrailingZeroCount(hits));
                    break;
                }
            }
            float iscale = -127f / max;
            Vector256<float> scale = Vector256.Create(iscale);
            for (int i = 0; i < SuperBlockSize; i += 16)
            {
                // nearest_int(v) is round-half-even for |v| ≤ 2^22, as vroundps; min(127, ·) as the C code (−127·x/max ≥ −127).
                Vector256<int> i0 = Vector256.Min(Vector256.ConvertToInt32(Vector256.Round(Vector256.LoadUnsafe(ref xb, (nuint)i) * scale)), Vector256.Create(127));
                Vector256<int> i1 = Vector256.Min(Vector256.ConvertToInt32(Vector256.Round(Vector256.LoadUnsafe(ref xb, (nuint)i + 8) * scale)), Vector256.Create(127));
                Vector128<short> narrow = Vector128.Narrow(i0.GetLower(), i0.GetUpper()), narrow1 = Vector128.Narrow(i1.GetLower(), i1.GetUpper());
                Vector128.Narrow(narrow, narrow1).StoreUnsafe(ref Unsafe.Add(ref q0, b * SuperBlockSize + i));
                Unsafe.Add(ref s0, b * 16 + i / 16) = (short)Vector256.Sum(i0 + i1);
            }
            scales[b] = 1f / iscale;
        }
    }

    /// <summary>
    /// <see cref="QuantizeBlock"/> returning the block's max|v| unrounded: the int8 values are round(v·127/max) as
    /// ggml's AVX2 <c>quantize_row_q8_0</c>/<c>_q8_1</c> compute them.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    private static float QuantizeBlockMax(Vector256<float> v0, Vector256<float> v1, Vector256<float> v2, Vector256<float> v3, ref sbyte q, out int sum)
    {
        Vector256<float> max8 = Vector256.Max(Vector256.Max(Vector256.Abs(v0), Vector256.Abs(v1)), Vector256.Max(Vector256.Abs(v2), Vector256.Abs(v3)));
        Vector128<float> max4 = Vector128.Max(max8.GetLower(), max8.GetUpper());
        float max = MathF.Max(MathF.Max(max4[0], max4[1]), MathF.Max(max4[2], max4[3]));
        // ggml's AVX2 quantize_row_q8_0 multiplies by 127/max (not 1/scale): the same int8 values to the last bit.
        Vector256<float> inverse = Vector256.Create(max != 0f ? 127f / max : 0f);
        Vector256<int> i0 = Vector256.ConvertToInt32(Vector256.Round(v0 * inverse)), i1 = Vector256.ConvertToInt32(Vector256.Round(v1 * inverse));
        Vector256<int> i2 = Vector256.ConvertToInt32(Vector256.Round(v2 * inverse)), i3 = Vector256.ConvertToInt32(Vector256.Round(v3 * inverse));
        Vector256.Narrow(Vector256.Narrow(i0, i1), Vector256.Narrow(i2, i3)).StoreUnsafe(ref q);
        sum = Vector256.Sum((i0 + i1) + (i2 + i3));
        return max;
    }

    /// <summary>
    /// <paramref name="acc"/> + the byte dot products of 8 lanes: lane i gains Σ_{j&lt;4} w[4i + j]·x[4i + j], exactly, for
    /// any unsigned weights and signed activations (the kernel layout puts 4 weights of each of 8 rows in a lane's bytes).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static Vector256<int> MultiplyAddQuads(Vector256<int> acc, Vector256<byte> w, Vector256<sbyte> x)
    {
        if (AvxVnni.IsSupported)
            return AvxVnni.MultiplyWideningAndAdd(acc, w, x); // vpdpbusd: unsigned × signed, 4 products per lane, no saturation
        if (Avx2.IsSupported)
        {
            // vpmaddubsw saturates its int16 pair sums for weights above 127: each nibble goes separately (|15·127·2| fits).
            Vector256<byte> nibble = Vector256.Create((byte)0x0F);
            Vector256<short> low = Avx2.MultiplyAddAdjacent(w & nibble, x);
            Vector256<short> high = Avx2.MultiplyAddAdjacent(Vector256.ShiftRightLogical(w.AsUInt16(), 4).AsByte() & nibble, x);
            return acc + Avx2.MultiplyAddAdjacent(low, Vector256<short>.One) + (Avx2.MultiplyAddAdjacent(high, Vector256<short>.One) << 4);
        }
        Span<int> sums = stackalloc int[Vector256<int>.Count];
        for (int lane = 0; lane < sums.Length; lane++)
        {
            int sum = acc[lane];
            for (int j = 4 * lane; j < 4 * lane + 4; j++)
                sum += w[j] * x[j];
            sums[lane] = sum;
        }
        return Vector256.Create<int>(sums);
    }

    /// <summary>The 4 activation bytes at <paramref name="x"/> in every lane (one load; the partner of <see cref="MultiplyAddQuads"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static Vector256<sbyte> Broadcast4(ref sbyte x) => Vector256.Create(Unsafe.ReadUnaligned<int>(ref Unsafe.As<sbyte, byte>(ref x))).AsSByte();

    /// <summary>
    /// The 6-bit scales and mins of 8 rows' Q4_K super-blocks, one int32 lane per row, as ggml's
    /// <c>get_scale_min_k4</c> gives them: <paramref name="slices"/> holds the 12 scale bytes of each row as 3 slices of
    /// 4 bytes × 8 rows (the kernel layout); byte i of a lane of <paramref name="scales03"/> is the row's scale of
    /// sub-block i, of <paramref name="scales47"/> that of sub-block 4 + i, and likewise for the mins. Lane-wise shifts
    /// and masks only (ggml's <c>utmp</c> rearrangement of the three 32-bit words).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static void UnpackQ4KScales(ref byte slices, out Vector256<int> scales03, out Vector256<int> scales47, out Vector256<int> mins03, out Vector256<int> mins47)
    {
        Vector256<int> word0 = Vector256.LoadUnsafe(ref slices).AsInt32(), word1 = Vector256.LoadUnsafe(ref slices, 32).AsInt32(), word2 = Vector256.LoadUnsafe(ref slices, 64).AsInt32();
        Vector256<int> low6 = Vector256.Create(0x3f3f3f3f), low4 = Vector256.Create(0x0f0f0f0f), low2 = Vector256.Create(0x03030303);
        scales03 = word0 & low6;
        mins03 = word1 & low6;
        scales47 = (word2 & low4) | ((Vector256.ShiftRightLogical(word0, 6) & low2) << 4);
        mins47 = (Vector256.ShiftRightLogical(word2, 4) & low4) | ((Vector256.ShiftRightLogical(word1, 6) & low2) << 4);
    }

    /// <summary>
    /// <paramref name="acc"/> + the int16 pair products of 8 lanes: lane i gains a[2i]·b[2i] + a[2i + 1]·b[2i + 1], exactly
    /// (<c>vpdpwssd</c> on AVX-VNNI, <c>vpmaddwd</c> and an add on AVX2).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static Vector256<int> MultiplyAddPairs(Vector256<int> acc, Vector256<short> a, Vector256<short> b)
    {
        if (AvxVnni.IsSupported)
            return AvxVnni.MultiplyWideningAndAdd(acc, a, b);
        if (Avx2.IsSupported)
            return acc + Avx2.MultiplyAddAdjacent(a, b);
        Span<int> sums = stackalloc int[Vector256<int>.Count];
        for (int lane = 0; lane < sums.Length; lane++)
            sums[lane] = acc[lane] + a[2 * lane] * b[2 * lane] + a[2 * lane + 1] * b[2 * lane + 1];
        return Vector256.Create<int>(sums);
    }

    /// <summary>The 2 int16 values at <paramref name="x"/> in every lane (the partner of <see cref="MultiplyAddPairs"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static Vector256<short> Broadcast2(ref short x) => Vector256.Create(Unsafe.ReadUnaligned<int>(ref Unsafe.As<short, byte>(ref x))).AsInt16();
}
