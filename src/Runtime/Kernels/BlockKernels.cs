using System;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Llama.Compiled.CompilerServices;

/// <summary>
/// The shape-agnostic pieces of the generated Q8_0/Q4_0 kernels: quantizing activations to int8 blocks as llama.cpp
/// does for its Q8_0 dot products, the int8 dot product, and the reduction of eight integer block sums. The generated
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
    public static float QuantizeBlock(Vector256<float> v0, Vector256<float> v1, Vector256<float> v2, Vector256<float> v3, ref sbyte q, out int sum)
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
        return (float)(Half)(max / 127f);
    }

    /// <summary>
    /// The 32 products a[i]·b[i] of two int8 vectors in 8 int32 lanes whose sum is Σ a[i]·b[i] (which products a lane
    /// holds depends on the instruction path: callers reduce all 8). <paramref name="b"/> must not hold −128
    /// (activations quantized by <see cref="QuantizeBlock"/> lie in [−127, 127]).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static Vector256<int> DotInt32(Vector256<sbyte> a, Vector256<sbyte> b)
    {
        // Both instruction paths multiply unsigned by signed bytes: a's sign moves onto b (|a| ≤ 128 fits a byte unsigned).
        if (AvxVnni.IsSupported)
            return AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, Avx2.Abs(a), Avx2.Sign(b, a));
        if (Avx2.IsSupported)
        {
            // |a| ≤ 128 and |b| ≤ 127, so a pair of products never saturates its int16 sum.
            Vector256<short> pairs = Avx2.MultiplyAddAdjacent(Avx2.Abs(a), Avx2.Sign(b, a));
            return Avx2.MultiplyAddAdjacent(pairs, Vector256<short>.One);
        }
        (Vector256<short> aLow, Vector256<short> aHigh) = Vector256.Widen(a);
        (Vector256<short> bLow, Vector256<short> bHigh) = Vector256.Widen(b);
        (Vector256<int> p0, Vector256<int> p1) = Vector256.Widen(aLow * bLow);
        (Vector256<int> p2, Vector256<int> p3) = Vector256.Widen(aHigh * bHigh);
        return (p0 + p1) + (p2 + p3);
    }

    /// <summary>[Σp0, Σp1, ..., Σp7]: the lanes of eight vectors summed, lane i holding vector i's sum (wrapping on overflow).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    public static Vector256<int> Sum8(Vector256<int> p0, Vector256<int> p1, Vector256<int> p2, Vector256<int> p3, Vector256<int> p4, Vector256<int> p5, Vector256<int> p6, Vector256<int> p7)
    {
        if (Avx2.IsSupported)
        {
            // Two levels of hadd leave [Σlow p0..p3 | Σhigh p0..p3] per 128-bit half; adding the halves finishes each sum.
            Vector256<int> first = Avx2.HorizontalAdd(Avx2.HorizontalAdd(p0, p1), Avx2.HorizontalAdd(p2, p3));
            Vector256<int> second = Avx2.HorizontalAdd(Avx2.HorizontalAdd(p4, p5), Avx2.HorizontalAdd(p6, p7));
            return Avx2.Permute2x128(first, second, 0x20) + Avx2.Permute2x128(first, second, 0x31);
        }
        return Vector256.Create(Vector256.Sum(p0), Vector256.Sum(p1), Vector256.Sum(p2), Vector256.Sum(p3), Vector256.Sum(p4), Vector256.Sum(p5), Vector256.Sum(p6), Vector256.Sum(p7));
    }
}
