using System;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Llama.Compiled.CompilerServices;
using Xunit;

namespace Llama.Compiled.Tests.Kernels;

/// <summary>
/// The shape-agnostic primitives the generated kernels inline (<see cref="BlockKernels"/>, <see cref="KernelMath.Sum4"/>,
/// the F16 loads of <see cref="KernelMath"/>), each against a scalar reference. They choose instructions when compiled:
/// <see cref="PrimitiveInstructionSetTests"/> runs this class again with AVX-VNNI, AVX2 and AVX hidden.
/// </summary>
public sealed class BlockKernelsTests
{
    private static Vector256<float> Floats(Random random, Func<Random, float> next) =>
        Vector256.Create(Enumerable.Range(0, 8).Select(_ => next(random)).ToArray());

    [Fact]
    public void Sum4OfIntegerValuedVectorsIsExact()
    {
        var random = new Random(1);
        for (int i = 0; i < 1000; i++)
        {
            Vector256<float>[] v = Enumerable.Range(0, 4).Select(_ => Floats(random, r => r.Next(-1000, 1000))).ToArray();
            Vector128<float> sums = KernelMath.Sum4(v[0], v[1], v[2], v[3]);
            for (int lane = 0; lane < 4; lane++)
                Assert.Equal(Enumerable.Range(0, 8).Sum(j => v[lane][j]), sums[lane]);
        }
    }

    [Fact]
    public void Sum4IsWithinRoundingOfADoublePrecisionSum()
    {
        var random = new Random(2);
        for (int i = 0; i < 1000; i++)
        {
            Vector256<float>[] v = Enumerable.Range(0, 4).Select(_ => Floats(random, r => (float)(r.NextDouble() * 2 - 1))).ToArray();
            Vector128<float> sums = KernelMath.Sum4(v[0], v[1], v[2], v[3]);
            for (int lane = 0; lane < 4; lane++)
            {
                double exact = Enumerable.Range(0, 8).Sum(j => (double)v[lane][j]);
                double magnitude = Enumerable.Range(0, 8).Sum(j => Math.Abs((double)v[lane][j]));
                Assert.True(Math.Abs(sums[lane] - exact) <= 8 * magnitude / (1 << 24), // 7 float additions, each within half an ulp
                    $"lane {lane}: {sums[lane]:R} against {exact:R}");
            }
        }
    }

    [Fact]
    public void MultiplyAddQuadsAddsEachLanesFourProducts()
    {
        var random = new Random(4);
        for (int i = 0; i < 2000; i++)
        {
            byte[] w = Enumerable.Range(0, 32).Select(_ => (byte)random.Next(0, 256)).ToArray();
            sbyte[] x = Enumerable.Range(0, 32).Select(_ => (sbyte)random.Next(-128, 128)).ToArray();
            int[] acc = Enumerable.Range(0, 8).Select(_ => random.Next(-1 << 20, 1 << 20)).ToArray();
            AssertQuads(acc, w, x);
        }
    }

    [Theory]
    [InlineData(255, 127)]
    [InlineData(255, -128)]
    [InlineData(128, -127)]
    [InlineData(15, -128)]
    [InlineData(0, 127)]
    public void MultiplyAddQuadsAtTheExtremesDoesNotSaturate(int w, int x) =>
        AssertQuads(new int[8], Enumerable.Repeat((byte)w, 32).ToArray(), Enumerable.Repeat((sbyte)x, 32).ToArray());

    private static void AssertQuads(int[] acc, byte[] w, sbyte[] x)
    {
        // Lane i holds exactly the products of bytes 4i..4i+3: the kernel layout puts one row in each lane.
        Vector256<int> sums = BlockKernels.MultiplyAddQuads(Vector256.Create(acc), Vector256.Create(w), Vector256.Create(x));
        for (int lane = 0; lane < 8; lane++)
            Assert.Equal(acc[lane] + Enumerable.Range(4 * lane, 4).Sum(j => w[j] * x[j]), sums[lane]);
    }

    [Fact]
    public void UnpackQ4KScalesGivesEachRowsSixBitScalesAndMins()
    {
        // 8 rows' 12 scale bytes as the kernel layout holds them (3 slices of 4 bytes × 8 rows), against ggml's get_scale_min_k4.
        var random = new Random(6);
        for (int trial = 0; trial < 200; trial++)
        {
            byte[][] rows = Enumerable.Range(0, 8).Select(_ => Enumerable.Range(0, 12).Select(_ => (byte)random.Next(256)).ToArray()).ToArray();
            byte[] slices = new byte[96];
            for (int r = 0; r < 8; r++)
            {
                for (int i = 0; i < 12; i++)
                    slices[i / 4 * 32 + r * 4 + i % 4] = rows[r][i];
            }
            BlockKernels.UnpackQ4KScales(ref slices[0], out Vector256<int> scales03, out Vector256<int> scales47, out Vector256<int> mins03, out Vector256<int> mins47);
            for (int r = 0; r < 8; r++)
            {
                for (int j = 0; j < 8; j++)
                {
                    (int scale, int min) = Reference(j, rows[r]);
                    Assert.Equal(scale, ((j < 4 ? scales03 : scales47)[r] >> (8 * (j % 4))) & 0xFF);
                    Assert.Equal(min, ((j < 4 ? mins03 : mins47)[r] >> (8 * (j % 4))) & 0xFF);
                }
            }
        }

        // ggml's get_scale_min_k4, written out here as the independent reference.
        static (int Scale, int Min) Reference(int j, byte[] q) => j < 4
            ? (q[j] & 63, q[j + 4] & 63)
            : ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }

    [Fact]
    public void MultiplyAddPairsAddsEachLanesTwoProducts()
    {
        var random = new Random(8);
        for (int i = 0; i < 2000; i++)
        {
            short[] a = Enumerable.Range(0, 16).Select(_ => (short)random.Next(-32768, 32768)).ToArray();
            short[] b = Enumerable.Range(0, 16).Select(_ => (short)random.Next(i % 2 == 0 ? -32768 : -4064, i % 2 == 0 ? 32768 : 4065)).ToArray();
            int[] acc = Enumerable.Range(0, 8).Select(_ => random.Next(-1 << 20, 1 << 20)).ToArray();
            Vector256<int> sums = BlockKernels.MultiplyAddPairs(Vector256.Create(acc), Vector256.Create(a), Vector256.Create(b));
            for (int lane = 0; lane < 8; lane++)
                Assert.Equal(unchecked(acc[lane] + a[2 * lane] * b[2 * lane] + a[2 * lane + 1] * b[2 * lane + 1]), sums[lane]);
        }
        short[] pair = [-7, 4064];
        Assert.Equal(Vector256.Create((short)-7, (short)4064, -7, 4064, -7, 4064, -7, 4064, -7, 4064, -7, 4064, -7, 4064, -7, 4064), BlockKernels.Broadcast2(ref pair[0]));
    }

    [Fact]
    public void Broadcast4PutsTheFourBytesInEveryLane()
    {
        sbyte[] x = [1, -2, 3, -128, 127, 9];
        Vector256<sbyte> four = BlockKernels.Broadcast4(ref x[1]);
        for (int i = 0; i < 32; i++)
            Assert.Equal(x[1 + i % 4], four[i]);
    }

    [Fact]
    public void HalfToSingleIsExactForEveryHalfAtAnyAlignment()
    {
        // Every F16 bit pattern, one byte past an even address: the loads must not assume alignment.
        byte[] bytes = new byte[1 + 2 * 65536 + 14];
        for (int bits = 0; bits < 65536; bits++)
            BitConverter.TryWriteBytes(bytes.AsSpan(1 + 2 * bits), (ushort)bits);
        ref byte first = ref bytes[1];
        for (int bits = 0; bits < 65536; bits++)
        {
            float expected = (float)BitConverter.UInt16BitsToHalf((ushort)bits);
            AssertSameFloat(expected, KernelMath.HalfToSingle(ref Unsafe.Add(ref first, 2 * bits)), bits);
        }
        for (int bits = 0; bits < 65536; bits += 8)
        {
            Vector256<float> eight = KernelMath.HalfToSingle8(ref Unsafe.Add(ref first, 2 * bits));
            for (int lane = 0; lane < 8; lane++)
                AssertSameFloat((float)BitConverter.UInt16BitsToHalf((ushort)(bits + lane)), eight[lane], bits + lane);
        }
    }

    private static void AssertSameFloat(float expected, float actual, int halfBits)
    {
        if (float.IsNaN(expected))
            Assert.True(float.IsNaN(actual) && float.IsNegative(actual) == float.IsNegative(expected), $"half 0x{halfBits:X4}: {actual:R} is not a NaN of the same sign");
        else
            Assert.True(BitConverter.SingleToUInt32Bits(expected) == BitConverter.SingleToUInt32Bits(actual), $"half 0x{halfBits:X4}: {actual:R} instead of {expected:R}");
    }

    /// <summary>ggml's AVX2 quantize_row_q8_0 per block, in scalar code: scale max|x|/127 as F16, q = x·(127/max) rounded to even.</summary>
    private static (float Scale, sbyte[] Q, int Sum) QuantizeReference(ReadOnlySpan<float> x)
    {
        float max = 0f;
        foreach (float v in x)
            max = MathF.Max(max, MathF.Abs(v));
        float inverse = max != 0f ? 127f / max : 0f;
        sbyte[] q = new sbyte[32];
        for (int i = 0; i < 32; i++)
            q[i] = (sbyte)(int)MathF.Round(x[i] * inverse, MidpointRounding.ToEven);
        return ((float)(Half)(max / 127f), q, q.Sum(v => (int)v));
    }

    [Theory]
    [InlineData(1f)]
    [InlineData(1e-3f)]
    [InlineData(1e4f)]
    [InlineData(0f)] // all zeros: scale 0, q 0
    public void QuantizeBlocksMatchesTheScalarReference(float magnitude)
    {
        var random = new Random(6);
        const int Blocks = 37;
        float[] x = Enumerable.Range(0, Blocks * 32).Select(_ => (float)(random.NextDouble() * 2 - 1) * magnitude).ToArray();
        x[40] = 0.5f * magnitude; // with x[41] the block's max: x·127/max = 63.5 exactly for magnitude 1, a tie rounded to even
        x[41] = magnitude;
        sbyte[] q = new sbyte[x.Length];
        float[] scales = new float[Blocks];
        int[] sums = new int[Blocks];
        BlockKernels.QuantizeBlocks(x, q, scales, sums);
        for (int b = 0; b < Blocks; b++)
        {
            (float scale, sbyte[] expected, int sum) = QuantizeReference(x.AsSpan(b * 32, 32));
            Assert.Equal(scale, scales[b]);
            Assert.Equal(expected, q.AsSpan(b * 32, 32).ToArray());
            Assert.Equal(sum, sums[b]);
        }
    }

    [Fact]
    public void QuantizeBlockReturnsTheScaleAndWritesOneBlock()
    {
        float[] x = Enumerable.Range(0, 32).Select(i => (i - 16) * 0.37f).ToArray();
        sbyte[] q = new sbyte[33];
        q[32] = 99; // the byte after the block stays untouched
        float scale = BlockKernels.QuantizeBlock(Vector256.Create(x.AsSpan(0, 8)), Vector256.Create(x.AsSpan(8, 8)), Vector256.Create(x.AsSpan(16, 8)), Vector256.Create(x.AsSpan(24, 8)),
            ref MemoryMarshal.GetArrayDataReference(q), out int sum);
        (float expectedScale, sbyte[] expected, int expectedSum) = QuantizeReference(x);
        Assert.Equal(expectedScale, scale);
        Assert.Equal(expected, q.AsSpan(0, 32).ToArray());
        Assert.Equal(expectedSum, sum);
        Assert.Equal(99, q[32]);
        Assert.Equal(-127, q[0]); // −16·0.37 is the largest magnitude
    }

    [Theory]
    [InlineData(33, 33, 2, 2)]  // not whole blocks
    [InlineData(64, 63, 2, 2)]  // q too short
    [InlineData(64, 64, 1, 2)]  // scales too short
    [InlineData(64, 64, 2, 1)]  // sums too short
    public void QuantizeBlocksRefusesBuffersSmallerThanTheShape(int n, int qLength, int scalesLength, int sumsLength) =>
        Assert.Throws<ArgumentException>(() => BlockKernels.QuantizeBlocks(new float[n], new sbyte[qLength], new float[scalesLength], new int[sumsLength]));
}
