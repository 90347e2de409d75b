using System;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Llama.Compiled.CompilerServices;

/// <summary>
/// The activations of up to <see cref="Tokens"/> tokens transposed for the F32 prefill kernels: in a panel, column k of
/// x (the k-th value of every token) lies in <see cref="Tokens"/> consecutive floats, so that one weight, broadcast,
/// multiplies a vector of tokens (a matrix product's outer-product form), while the weights stay where the file put them.
/// Each thread packs into its own panel, kept for the thread's life and aligned to a cache line.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class TokenPanel
{
    /// <summary>Tokens per panel: four Vector512, or eight Vector256, per column.</summary>
    public const int Tokens = 64;

    private const int LineFloats = 16;

    [ThreadStatic] private static float[]? t_panel;
    [ThreadStatic] private static int t_offset;

    /// <summary>
    /// Packs x[first + t, k] for t &lt; <paramref name="count"/> into the calling thread's panel at [k·Tokens + t] and
    /// returns the panel's first float; the lanes of tokens count..Tokens are zero. The panel stays valid until this
    /// thread packs again.
    /// </summary>
    /// <param name="x">[tokens, <paramref name="cols"/>] row-major.</param>
    /// <param name="cols">Values per token, a multiple of 8.</param>
    /// <param name="first">The first token to pack.</param>
    /// <param name="count">Tokens to pack, 1 to <see cref="Tokens"/>.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static ref float Pack(ReadOnlySpan<float> x, int cols, int first, int count)
    {
        if (cols <= 0 || cols % 8 != 0 || first < 0 || count < 1 || count > Tokens || x.Length < (long)(first + count) * cols)
            throw new ArgumentException($"Cannot pack {count} token(s) from {first} of {cols} values out of {x.Length} floats.");
        ref float panel = ref Panel(cols);
        ref float x0 = ref Unsafe.Add(ref MemoryMarshal.GetReference(x), (nint)first * cols);
        int whole = count - count % 8;
        for (int t = 0; t < whole; t += 8)
        {
            ref float tokens = ref Unsafe.Add(ref x0, (nint)t * cols);
            for (int k = 0; k < cols; k += 8)
                Transpose8x8(ref Unsafe.Add(ref tokens, k), cols, ref Unsafe.Add(ref panel, (nint)k * Tokens + t), Tokens);
        }
        for (int k = 0; k < cols; k++)
        {
            ref float column = ref Unsafe.Add(ref panel, (nint)k * Tokens);
            for (int t = whole; t < count; t++)
                Unsafe.Add(ref column, t) = Unsafe.Add(ref x0, (nint)t * cols + k);
            if (count < Tokens)
                MemoryMarshal.CreateSpan(ref Unsafe.Add(ref column, count), Tokens - count).Clear();
        }
        return ref panel;
    }

    /// <summary>
    /// y[t·<paramref name="yStride"/> + i] = tile[i·Tokens + t] (+= when <paramref name="accumulate"/>) for i &lt;
    /// <paramref name="rows"/>, t &lt; <paramref name="count"/>: a kernel's [rows, Tokens] sums into y's [tokens, rows] layout.
    /// The tile holds 8 rows of Tokens floats whatever <paramref name="rows"/> is (1 to 8): 8 × 8 blocks of it are transposed
    /// whole, and the rows past <paramref name="rows"/> are read but not used.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Unpack(ref float tile, int rows, ref float y, int yStride, int count, bool accumulate)
    {
        if (rows < 1 || rows > 8 || count < 0 || count > Tokens)
            throw new ArgumentException($"Cannot unpack {rows} row(s) × {count} token(s).");
        int t = 0;
        if (Avx.IsSupported && rows >= 4)
        {
            // 8 tokens at a time: an 8 × 8 transpose gives each token its rows side by side, the first four stored as one vector.
            Span<float> block = stackalloc float[64];
            ref float block0 = ref MemoryMarshal.GetReference(block);
            for (; t + 8 <= count; t += 8)
            {
                Transpose8x8(ref Unsafe.Add(ref tile, t), Tokens, ref block0, 8);
                for (int j = 0; j < 8; j++)
                {
                    ref float yt = ref Unsafe.Add(ref y, (nint)(t + j) * yStride);
                    ref float sums = ref Unsafe.Add(ref block0, j * 8);
                    Vector128<float> first = Vector128.LoadUnsafe(ref sums);
                    (accumulate ? first + Vector128.LoadUnsafe(ref yt) : first).StoreUnsafe(ref yt);
                    for (int i = 4; i < rows; i++)
                        Unsafe.Add(ref yt, i) = accumulate ? Unsafe.Add(ref yt, i) + Unsafe.Add(ref sums, i) : Unsafe.Add(ref sums, i);
                }
            }
        }
        for (; t < count; t++)
        {
            ref float yt = ref Unsafe.Add(ref y, (nint)t * yStride);
            for (int i = 0; i < rows; i++)
            {
                float value = Unsafe.Add(ref tile, i * Tokens + t);
                Unsafe.Add(ref yt, i) = accumulate ? Unsafe.Add(ref yt, i) + value : value;
            }
        }
    }

    /// <summary>The calling thread's panel of at least cols × Tokens floats, starting a cache line.</summary>
    private static unsafe ref float Panel(int cols)
    {
        int floats = cols * Tokens;
        if (t_panel is null || t_panel.Length - t_offset < floats)
        {
            // Pinned, so that the offset to the first cache line stays right (the array never moves).
            float[] panel = GC.AllocateUninitializedArray<float>(floats + LineFloats, pinned: true);
            t_offset = (int)((LineFloats - (nuint)Unsafe.AsPointer(ref panel[0]) / sizeof(float) % LineFloats) % LineFloats);
            t_panel = panel;
        }
        return ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(t_panel), t_offset);
    }

    /// <summary>dst[j·dstStride + i] = src[i·srcStride + j] for i, j &lt; 8.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining | MethodImplOptions.AggressiveOptimization)]
    internal static void Transpose8x8(ref float src, nint srcStride, ref float dst, nint dstStride)
    {
        if (!Avx.IsSupported)
        {
            for (int i = 0; i < 8; i++)
            {
                for (int j = 0; j < 8; j++)
                    Unsafe.Add(ref dst, j * dstStride + i) = Unsafe.Add(ref src, i * srcStride + j);
            }
            return;
        }
        Vector256<float> r0 = Vector256.LoadUnsafe(ref src), r1 = Vector256.LoadUnsafe(ref Unsafe.Add(ref src, srcStride));
        Vector256<float> r2 = Vector256.LoadUnsafe(ref Unsafe.Add(ref src, 2 * srcStride)), r3 = Vector256.LoadUnsafe(ref Unsafe.Add(ref src, 3 * srcStride));
        Vector256<float> r4 = Vector256.LoadUnsafe(ref Unsafe.Add(ref src, 4 * srcStride)), r5 = Vector256.LoadUnsafe(ref Unsafe.Add(ref src, 5 * srcStride));
        Vector256<float> r6 = Vector256.LoadUnsafe(ref Unsafe.Add(ref src, 6 * srcStride)), r7 = Vector256.LoadUnsafe(ref Unsafe.Add(ref src, 7 * srcStride));
        // Pairs of rows interleaved, then pairs of pairs, then the 128-bit halves exchanged: [r0[j], r1[j], ..., r7[j]] per j.
        Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1), t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3);
        Vector256<float> t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5), t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
        Vector256<float> s0 = Avx.Shuffle(t0, t2, 0x44), s1 = Avx.Shuffle(t0, t2, 0xEE), s2 = Avx.Shuffle(t1, t3, 0x44), s3 = Avx.Shuffle(t1, t3, 0xEE);
        Vector256<float> s4 = Avx.Shuffle(t4, t6, 0x44), s5 = Avx.Shuffle(t4, t6, 0xEE), s6 = Avx.Shuffle(t5, t7, 0x44), s7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Permute2x128(s0, s4, 0x20).StoreUnsafe(ref dst);
        Avx.Permute2x128(s1, s5, 0x20).StoreUnsafe(ref Unsafe.Add(ref dst, dstStride));
        Avx.Permute2x128(s2, s6, 0x20).StoreUnsafe(ref Unsafe.Add(ref dst, 2 * dstStride));
        Avx.Permute2x128(s3, s7, 0x20).StoreUnsafe(ref Unsafe.Add(ref dst, 3 * dstStride));
        Avx.Permute2x128(s0, s4, 0x31).StoreUnsafe(ref Unsafe.Add(ref dst, 4 * dstStride));
        Avx.Permute2x128(s1, s5, 0x31).StoreUnsafe(ref Unsafe.Add(ref dst, 5 * dstStride));
        Avx.Permute2x128(s2, s6, 0x31).StoreUnsafe(ref Unsafe.Add(ref dst, 6 * dstStride));
        Avx.Permute2x128(s3, s7, 0x31).StoreUnsafe(ref Unsafe.Add(ref dst, 7 * dstStride));
    }
}
