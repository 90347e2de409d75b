using System;
using System.Buffers.Binary;
using System.Linq;
using Xunit;

namespace Llama.Compiled.Tests.Formats;

/// <summary>Spot checks of llama.cpp's reference Q8_0/Q4_0 algorithms on hand-made blocks.</summary>
public sealed class BlockQuantizationTests
{
    private static float[] Block(params (int Index, float Value)[] values)
    {
        var block = new float[32];
        foreach ((int index, float value) in values)
            block[index] = value;
        return block;
    }

    private static Half Scale(byte[] block) => BinaryPrimitives.ReadHalfLittleEndian(block);

    [Fact]
    public void Q8_0ZerosGiveAZeroScaleAndZeroQuants()
    {
        var q = new byte[34];
        q.AsSpan().Fill(0xAA);
        BlockQuantization.QuantizeQ8_0(new float[32], q);
        Assert.All(q, b => Assert.Equal(0, b));
        var back = new float[32];
        BlockQuantization.DequantizeQ8_0(q, back);
        Assert.All(back, v => Assert.Equal(0f, v));
    }

    [Fact]
    public void Q8_0RoundsHalvesAwayFromZero()
    {
        // amax 127 → d = 1, id = 1 exactly: q = roundf(x) with ties away from zero (not to even).
        float[] x = Block((0, 127f), (1, 0.5f), (2, -0.5f), (3, 1.5f), (4, 2.5f), (5, -2.5f), (6, 0.49999997f), (7, -126.5f), (8, -127f));
        var q = new byte[34];
        BlockQuantization.QuantizeQ8_0(x, q);
        Assert.Equal((Half)1f, Scale(q));
        sbyte[] expected = [127, 1, -1, 2, 3, -3, 0, -127, -127];
        for (int i = 0; i < expected.Length; i++)
            Assert.Equal(expected[i], (sbyte)q[2 + i]);
    }

    [Fact]
    public void Q8_0QuantizesWithTheUnroundedScale()
    {
        // amax = 1 → d = 1/127 (F32), stored as the nearest F16 0.007873535; q uses id = 1/d of the F32 d:
        // x = 0.791315 gives x·id = 100.497 → 100, where the F16 scale's inverse (127.0078) would give 101.
        float[] x = Block((0, 1f), (1, 0.5f), (2, -0.25f), (3, 0.791315f));
        var q = new byte[34];
        BlockQuantization.QuantizeQ8_0(x, q);
        float d = 1f / 127f;
        Assert.Equal((Half)d, Scale(q));
        Assert.NotEqual(d, (float)(Half)d);
        float id = 1f / d;
        for (int i = 0; i < 4; i++)
            Assert.Equal((sbyte)MathF.Round(x[i] * id, MidpointRounding.AwayFromZero), (sbyte)q[2 + i]);
        Assert.Equal(127, (sbyte)q[2]);
        Assert.Equal(64, (sbyte)q[3]);
        Assert.Equal(100, (sbyte)q[5]);
        Assert.Equal(101, (int)MathF.Round(x[3] * (1f / (float)(Half)d), MidpointRounding.AwayFromZero));

        var back = new float[32];
        BlockQuantization.DequantizeQ8_0(q, back);
        Assert.Equal(127 * (float)(Half)d, back[0]);
    }

    [Fact]
    public void Q4_0UsesTheSignedMaximumAndTruncates()
    {
        // max = -8 (largest magnitude, negative) → d = max / -8 = 1, id = 1; nibble = min(15, (int)(x + 8.5)).
        // -8 → 0, 7 → 15, 8 (same magnitude, later, so not the max) → 16 → clamped to 15,
        // 0.5 → 9 (truncation of 9.0), 0.4999 → 8, -0.5 → 8, -0.51 → 7, 0 → 8.
        float[] x = Block((0, -8f), (1, 7f), (2, 8f), (3, 0.5f), (4, 0.4999f), (5, -0.5f), (6, -0.51f), (16, -7.5f), (17, 3f), (31, 1.5f));
        var q = new byte[18];
        BlockQuantization.QuantizeQ4_0(x, q);
        Assert.Equal((Half)1f, Scale(q));
        int Nibble(int i) => i < 16 ? q[2 + i] & 0x0F : q[2 + i - 16] >> 4;
        int[] expected = new int[32];
        Array.Fill(expected, 8);
        (expected[0], expected[1], expected[2], expected[3], expected[4], expected[5], expected[6]) = (0, 15, 15, 9, 8, 8, 7);
        (expected[16], expected[17], expected[31]) = (1, 11, 10);
        for (int i = 0; i < 32; i++)
            Assert.True(expected[i] == Nibble(i), $"element {i}: expected {expected[i]}, got {Nibble(i)}");

        var back = new float[32];
        BlockQuantization.DequantizeQ4_0(q, back);
        Assert.Equal(-8f, back[0]);
        Assert.Equal(7f, back[1]);
        Assert.Equal(7f, back[2]);
        Assert.Equal(-7f, back[16]);
    }

    [Fact]
    public void Q4_0PositiveMaximumGivesANegativeScale()
    {
        // max = +4 → d = -0.5, id = -2: x = 4 → -8 + 8.5 → 0; x = -4 → 16.5 → 15; dequantized (0-8)·-0.5 = 4.
        float[] x = Block((5, 4f), (6, -4f), (7, 1f));
        var q = new byte[18];
        BlockQuantization.QuantizeQ4_0(x, q);
        Assert.Equal((Half)(-0.5f), Scale(q));
        Assert.Equal(0, q[2 + 5] & 0x0F);
        Assert.Equal(15, q[2 + 6] & 0x0F);
        Assert.Equal(6, q[2 + 7] & 0x0F); // -2 + 8.5 = 6.5 → 6
        var back = new float[32];
        BlockQuantization.DequantizeQ4_0(q, back);
        Assert.Equal(4f, back[5]);
        Assert.Equal(-3.5f, back[6]);
        Assert.Equal(1f, back[7]);
    }

    [Fact]
    public void Q4_0ZerosGiveTheMidpointNibble()
    {
        var q = new byte[18];
        BlockQuantization.QuantizeQ4_0(new float[32], q);
        Assert.Equal(0, Scale(q) == (Half)0 ? 0 : 1);
        for (int j = 0; j < 16; j++)
            Assert.Equal(0x88, q[2 + j]);
    }

    [Fact]
    public void ScaleRoundsToNearestEvenF16()
    {
        // amax chosen so that amax/127 lies exactly between two F16 values would be rare; instead check
        // the stored scale is exactly (Half)(amax/127) for many magnitudes, including F16 overflow.
        var random = new Random(3);
        var q = new byte[34];
        for (int n = 0; n < 1000; n++)
        {
            float amax = (float)Math.Pow(2, random.Next(-30, 24)) * (float)(1 + random.NextDouble());
            float[] x = Block((random.Next(32), random.Next(2) == 0 ? amax : -amax));
            BlockQuantization.QuantizeQ8_0(x, q);
            Assert.Equal((Half)(amax / 127f), Scale(q));
        }
    }

    [Fact]
    public void RoundTripErrorIsWithinHalfAStep()
    {
        float[] x = TestData.Random(32 * 64, seed: 11);
        var q8 = new byte[64 * 34];
        var q4 = new byte[64 * 18];
        var back8 = new float[x.Length];
        var back4 = new float[x.Length];
        BlockQuantization.QuantizeQ8_0(x, q8);
        BlockQuantization.DequantizeQ8_0(q8, back8);
        BlockQuantization.QuantizeQ4_0(x, q4);
        BlockQuantization.DequantizeQ4_0(q4, back4);
        for (int b = 0; b < 64; b++)
        {
            float amax = 0;
            for (int i = 0; i < 32; i++)
                amax = Math.Max(amax, Math.Abs(x[b * 32 + i]));
            for (int i = b * 32; i < b * 32 + 32; i++)
            {
                Assert.True(Math.Abs(x[i] - back8[i]) <= amax / 127 * 0.57, $"q8 {i}");
                Assert.True(Math.Abs(x[i] - back4[i]) <= amax / 8 * 1.01, $"q4 {i}");
            }
        }
    }

    [Theory]
    [InlineData(WeightFormat.Q8_0, 8, 3)]
    [InlineData(WeightFormat.Q8_0, 21, 2)]
    [InlineData(WeightFormat.Q8_0, 16, 32)]
    [InlineData(WeightFormat.Q4_0, 5, 3)]
    [InlineData(WeightFormat.Q4_0, 24, 29)]
    public void KernelLayoutInterleavesGroupsOfEightRows(WeightFormat format, int rows, int blocks)
    {
        int blockBytes = format == WeightFormat.Q8_0 ? 34 : 18, weightBytes = blockBytes - 2, rowBytes = blocks * blockBytes, cols = blocks * 32;
        var matrix = new byte[rows * rowBytes];
        for (int i = 0; i < matrix.Length; i++)
            matrix[i] = (byte)(i * 7 + i / blockBytes);
        int groups = (rows + 7) / 8;
        Assert.Equal(groups * 8L * rowBytes, BlockQuantization.KernelLayoutBytes(format, rows, cols));
        var kernel = new byte[groups * 8 * rowBytes];
        kernel.AsSpan().Fill(0xAB);
        BlockQuantization.ToKernelLayout(format, rows, cols, matrix, kernel);

        for (int r = 0; r < groups * 8; r++)
        {
            // Group g: [blocks × 8 row scales][blocks × slices of 4 bytes × 8 rows]; the rows after the matrix's last are zeros.
            int group = r / 8 * 8 * rowBytes, lane = r % 8;
            for (int b = 0; b < blocks; b++)
            {
                int scale = group + (b * 8 + lane) * 2;
                Assert.Equal(r < rows ? matrix[r * rowBytes + b * blockBytes] : 0, kernel[scale]);
                Assert.Equal(r < rows ? matrix[r * rowBytes + b * blockBytes + 1] : 0, kernel[scale + 1]);
                for (int i = 0; i < weightBytes; i++)
                {
                    int at = group + 16 * blocks + b * 8 * weightBytes + i / 4 * 32 + lane * 4 + i % 4;
                    byte stored = r < rows ? matrix[r * rowBytes + b * blockBytes + 2 + i] : (byte)0;
                    byte expected = format == WeightFormat.Q8_0 && r < rows ? (byte)((stored + 128) % 256) : stored; // Q8_0: the int8 weight + 128, unsigned
                    Assert.Equal(expected, kernel[at]);
                }
            }
        }

        var back = new byte[matrix.Length];
        BlockQuantization.FromKernelLayout(format, rows, cols, kernel, back);
        Assert.Equal(matrix, back);
    }

    [Theory]
    [InlineData(8, 1)]
    [InlineData(13, 3)]
    [InlineData(24, 2)]
    public void Q4KKernelLayoutInterleavesSuperBlocksOfEightRows(int rows, int superBlocks)
    {
        const int BlockBytes = 144;
        int rowBytes = superBlocks * BlockBytes, cols = superBlocks * 256, groups = (rows + 7) / 8;
        var matrix = new byte[rows * rowBytes];
        for (int i = 0; i < matrix.Length; i++)
            matrix[i] = (byte)(i * 7 + i / BlockBytes);
        Assert.Equal(groups * 8L * rowBytes, BlockQuantization.KernelLayoutBytes(WeightFormat.Q4_K, rows, cols));
        var kernel = new byte[groups * 8 * rowBytes];
        kernel.AsSpan().Fill(0xAB);
        BlockQuantization.ToKernelLayout(WeightFormat.Q4_K, rows, cols, matrix, kernel);

        for (int r = 0; r < groups * 8; r++)
        {
            // Super-block b of group g: [8 d][8 dmin][3 scale slices × 8 rows × 4][32 nibble slices × 8 rows × 4]; padding rows are zeros.
            int lane = r % 8;
            for (int b = 0; b < superBlocks; b++)
            {
                int block = r / 8 * 8 * rowBytes + b * 8 * BlockBytes;
                byte Stored(int i) => r < rows ? matrix[r * rowBytes + b * BlockBytes + i] : (byte)0;
                for (int i = 0; i < 2; i++)
                {
                    Assert.Equal(Stored(i), kernel[block + lane * 2 + i]);         // d
                    Assert.Equal(Stored(2 + i), kernel[block + 16 + lane * 2 + i]); // dmin
                }
                for (int i = 0; i < 140; i++)
                    Assert.Equal(Stored(4 + i), kernel[block + 32 + i / 4 * 32 + lane * 4 + i % 4]);
            }
        }

        var back = new byte[matrix.Length];
        BlockQuantization.FromKernelLayout(WeightFormat.Q4_K, rows, cols, kernel, back);
        Assert.Equal(matrix, back);
    }

    [Theory]
    [InlineData(WeightFormat.Q4_K, 256)]
    [InlineData(WeightFormat.Q8_0, 96)]
    [InlineData(WeightFormat.Q4_0, 64)]
    public void KernelLayoutRowsDequantizeAsTheStoredRows(WeightFormat format, int cols)
    {
        const int Rows = 11;
        var random = new Random(5);
        float[] values = Enumerable.Range(0, Rows * cols).Select(_ => (float)random.NextDouble() * 2 - 1).ToArray();
        int rowBytes = (int)BlockQuantization.RowBytes(format, cols);
        var stored = new byte[Rows * rowBytes];
        for (int r = 0; r < Rows; r++)
            BlockQuantization.Quantize(format, values.AsSpan(r * cols, cols), stored.AsSpan(r * rowBytes, rowBytes));
        var kernel = new byte[BlockQuantization.KernelLayoutBytes(format, Rows, cols)];
        BlockQuantization.ToKernelLayout(format, Rows, cols, stored, kernel);
        for (int r = 0; r < Rows; r++)
        {
            float[] expected = new float[cols], actual = new float[cols];
            BlockQuantization.Dequantize(format, stored.AsSpan(r * rowBytes, rowBytes), expected);
            BlockQuantization.DequantizeKernelLayoutRow(format, cols, kernel, r, actual);
            Assert.Equal(expected, actual);
        }
        Assert.Throws<ArgumentException>(() => BlockQuantization.DequantizeKernelLayoutRow(format, cols, kernel, 16, new float[cols]));
    }

    [Fact]
    public void KernelLayoutArgumentsAreChecked()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => BlockQuantization.ToKernelLayout(WeightFormat.F32, 1, 32, new byte[272], new byte[272]));
        Assert.Throws<ArgumentException>(() => BlockQuantization.ToKernelLayout(WeightFormat.Q8_0, 1, 33, new byte[272], new byte[272]));
        Assert.Throws<ArgumentException>(() => BlockQuantization.ToKernelLayout(WeightFormat.Q8_0, 2, 32, new byte[67], new byte[272]));
        Assert.Throws<ArgumentException>(() => BlockQuantization.ToKernelLayout(WeightFormat.Q4_0, 1, 32, new byte[18], new byte[143])); // a whole group is 144 bytes
        var same = new byte[272];
        Assert.Throws<ArgumentException>(() => BlockQuantization.FromKernelLayout(WeightFormat.Q8_0, 8, 32, same, same));
    }

    [Fact]
    public void ArgumentsAreChecked()
    {
        Assert.Throws<ArgumentException>(() => BlockQuantization.QuantizeQ8_0(new float[31], new byte[34]));
        Assert.Throws<ArgumentException>(() => BlockQuantization.QuantizeQ8_0(new float[32], new byte[33]));
        Assert.Throws<ArgumentException>(() => BlockQuantization.QuantizeQ4_0(new float[64], new byte[35]));
        Assert.Throws<ArgumentException>(() => BlockQuantization.DequantizeQ4_0(new byte[18], new float[33]));
        Assert.Throws<ArgumentException>(() => BlockQuantization.DequantizeQ8_0(new byte[60], new float[64]));
        Assert.Equal(68, BlockQuantization.RowBytes(WeightFormat.Q8_0, 64));
        Assert.Equal(36, BlockQuantization.RowBytes(WeightFormat.Q4_0, 64));
        Assert.Equal(344, BlockQuantization.RowBytes(WeightFormat.F16, 172));
        Assert.Throws<ArgumentException>(() => BlockQuantization.RowBytes(WeightFormat.Q4_0, 172));
    }
}
