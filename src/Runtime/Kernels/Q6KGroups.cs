using System;
using System.ComponentModel;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Llama.Compiled.CompilerServices;

/// <summary>
/// Q6_K rows unpacked for the prefill tiles: <see cref="Rows"/> rows of llama.cpp's Q6_K super-blocks, as the file
/// stores them, rearranged once per prefill call into the calling thread's scratch in the interleaved form of the kernel
/// layout (two groups of 8 rows, 4 weights of each row per lane), so that every tile of tokens after the first reads
/// them with plain loads: the bit unpacking of the 6-bit weights is paid once per 16 rows, not once per row and tile.
/// </summary>
/// <remarks>
/// Per super-block, <see cref="SuperBlockBytes"/> bytes: each group's weights as q + 32 (0..63, unsigned) in 64
/// slices of 8 rows × 4 bytes (slice k: weights 4k..4k + 3, so sub-block j of 16 weights is slices 4j..4j + 3) at
/// <see cref="WeightsAt"/>; the rows' int8 scales of the 16 sub-blocks as int32, [16 sub-blocks, 2 groups, 8 rows] at
/// <see cref="ScalesAt"/>; −32 times the scales of sub-blocks 2p and 2p + 1 as an int16 pair per row, [8 pairs, 2 groups,
/// 8 rows] at <see cref="OffsetScalesAt"/> (against the activations' sums of 16 they take the + 32 back out of the weights,
/// as ggml's AVX2 <c>ggml_vec_dot_q6_K_q8_K</c> does); the rows' d as F32, [2 groups, 8 rows] at <see cref="DAt"/>.
/// </remarks>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class Q6KGroups
{
    /// <summary>Rows unpacked at a time: two groups of 8.</summary>
    public const int Rows = 16;

    /// <summary>Bytes of one group's weights per super-block: 64 slices × 8 rows × 4 bytes.</summary>
    public const int GroupWeightBytes = 64 * 8 * 4;

    /// <summary>Offset of the first group's weights in a super-block (the second group's follow at <see cref="GroupWeightBytes"/>).</summary>
    public const int WeightsAt = 0;

    /// <summary>Offset of the sub-block scales, [16, 2 groups, 8 rows] int32, in a super-block.</summary>
    public const int ScalesAt = WeightsAt + 2 * GroupWeightBytes;

    /// <summary>Offset of the offset scales, [8 pairs, 2 groups, 8 rows] pairs of int16 (−32·scale), in a super-block.</summary>
    public const int OffsetScalesAt = ScalesAt + 16 * 2 * 8 * sizeof(int);

    /// <summary>Offset of the rows' d, [2 groups, 8 rows] F32, in a super-block.</summary>
    public const int DAt = OffsetScalesAt + 8 * 2 * 8 * sizeof(int);

    /// <summary>Bytes of one unpacked super-block of <see cref="Rows"/> rows (a whole number of cache lines).</summary>
    public const int SuperBlockBytes = DAt + 2 * 8 * sizeof(float);

    private const int LineBytes = 64;

    [ThreadStatic] private static byte[]? t_scratch;
    [ThreadStatic] private static int t_offset;

    /// <summary>
    /// Unpacks rows [0, <paramref name="rowCount"/>) of a Q6_K matrix, from <paramref name="rows"/> on, into the calling
    /// thread's scratch and returns its first byte (<paramref name="superBlocks"/> × <see cref="SuperBlockBytes"/>, starting a
    /// cache line); with fewer than <see cref="Rows"/> rows the last one fills the rest (computed, for the caller not to store).
    /// The scratch stays valid until this thread unpacks again.
    /// </summary>
    /// <param name="rows">The first row's first super-block.</param>
    /// <param name="rowBytes">Bytes from one row to the next: <paramref name="superBlocks"/> × 210.</param>
    /// <param name="rowCount">Rows to unpack, 1 to <see cref="Rows"/>.</param>
    /// <param name="superBlocks">Super-blocks per row.</param>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static ref byte Unpack(ref byte rows, int rowBytes, int rowCount, int superBlocks)
    {
        if (rowCount < 1 || rowCount > Rows || superBlocks < 1 || rowBytes < superBlocks * BlockQuantization.Q6_KBlockBytes)
            throw new ArgumentException($"Cannot unpack {rowCount} Q6_K row(s) of {superBlocks} super-block(s) {rowBytes} bytes apart.");
        ref byte scratch = ref Scratch(superBlocks * SuperBlockBytes);
        // One group's super-block unpacked row by row ([8 rows, 256] bytes), then transposed into slices.
        Span<byte> rowWeights = stackalloc byte[8 * 256];
        ref byte rowWeights0 = ref MemoryMarshal.GetReference(rowWeights);
        for (int sb = 0; sb < superBlocks; sb++)
        {
            ref byte to = ref Unsafe.Add(ref scratch, sb * SuperBlockBytes);
            ref int scales = ref Unsafe.As<byte, int>(ref Unsafe.Add(ref to, ScalesAt));
            ref int offsetScales = ref Unsafe.As<byte, int>(ref Unsafe.Add(ref to, OffsetScalesAt));
            ref float d = ref Unsafe.As<byte, float>(ref Unsafe.Add(ref to, DAt));
            for (int g = 0; g < 2; g++)
            {
                for (int r = 0; r < 8; r++)
                {
                    int row = Math.Min(8 * g + r, rowCount - 1);
                    ref byte block = ref Unsafe.Add(ref rows, row * rowBytes + sb * BlockQuantization.Q6_KBlockBytes);
                    for (int half = 0; half < 2; half++)
                    {
                        (Vector256<byte> q0, Vector256<byte> q1, Vector256<byte> q2, Vector256<byte> q3) =
                            QuantizedRows.Weights6(ref Unsafe.Add(ref block, 64 * half), ref Unsafe.Add(ref block, 128 + 32 * half));
                        ref byte weights = ref Unsafe.Add(ref rowWeights0, r * 256 + 128 * half);
                        q0.StoreUnsafe(ref weights);
                        q1.StoreUnsafe(ref weights, 32);
                        q2.StoreUnsafe(ref weights, 64);
                        q3.StoreUnsafe(ref weights, 96);
                    }
                    ref sbyte blockScales = ref Unsafe.As<byte, sbyte>(ref Unsafe.Add(ref block, 192));
                    for (int j = 0; j < 16; j++)
                        Unsafe.Add(ref scales, (j * 2 + g) * 8 + r) = Unsafe.Add(ref blockScales, j);
                    for (int p = 0; p < 8; p++)
                    {
                        int low = -32 * Unsafe.Add(ref blockScales, 2 * p), high = -32 * Unsafe.Add(ref blockScales, 2 * p + 1);
                        Unsafe.Add(ref offsetScales, (p * 2 + g) * 8 + r) = (ushort)low | high << 16;
                    }
                    Unsafe.Add(ref d, g * 8 + r) = KernelMath.HalfToSingle(ref Unsafe.Add(ref block, 208));
                }
                // 32 bytes (8 lanes of 4 weights) of each of the 8 rows at a time: lane j of every row makes slice 8c + j.
                // The transpose moves 32-bit lanes only, so the bytes pass through it as they are.
                for (int c = 0; c < 8; c++)
                {
                    TokenPanel.Transpose8x8(ref Unsafe.As<byte, float>(ref Unsafe.Add(ref rowWeights0, c * 32)), 256 / sizeof(float),
                        ref Unsafe.As<byte, float>(ref Unsafe.Add(ref to, WeightsAt + g * GroupWeightBytes + c * 8 * 32)), 32 / sizeof(float));
                }
            }
        }
        return ref scratch;
    }

    /// <summary>The calling thread's scratch of at least <paramref name="bytes"/> bytes, starting a cache line.</summary>
    private static unsafe ref byte Scratch(int bytes)
    {
        if (t_scratch is null || t_scratch.Length - t_offset < bytes)
        {
            // Pinned, so that the offset to the first cache line stays right (the array never moves).
            byte[] scratch = GC.AllocateUninitializedArray<byte>(bytes + LineBytes, pinned: true);
            t_offset = (int)((LineBytes - (nuint)Unsafe.AsPointer(ref scratch[0]) % LineBytes) % LineBytes);
            t_scratch = scratch;
        }
        return ref Unsafe.Add(ref MemoryMarshal.GetArrayDataReference(t_scratch), t_offset);
    }
}
