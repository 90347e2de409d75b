using System;
using System.Buffers.Binary;
using System.Linq;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Llama.Compiled.CompilerServices;
using Xunit;

namespace Llama.Compiled.Tests.Formats;

/// <summary>
/// llama.cpp's Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K: sizes, quantize/dequantize round trips and argument checks here;
/// bit-exactness against ggml itself is in the oracle project (KQuantOracleTests).
/// </summary>
public sealed class KQuantizationTests
{
    public static readonly TheoryData<WeightFormat> Formats =
        [WeightFormat.Q4_1, WeightFormat.Q5_0, WeightFormat.Q5_1, WeightFormat.Q4_K, WeightFormat.Q5_K, WeightFormat.Q6_K];

    [Fact]
    public void SizesAreGgmls()
    {
        (WeightFormat Format, int Weights, int Bytes)[] expected =
        [
            (WeightFormat.F32, 1, 4), (WeightFormat.F16, 1, 2), (WeightFormat.Q8_0, 32, 34), (WeightFormat.Q4_0, 32, 18),
            (WeightFormat.Q4_1, 32, 20), (WeightFormat.Q5_0, 32, 22), (WeightFormat.Q5_1, 32, 24),
            (WeightFormat.Q4_K, 256, 144), (WeightFormat.Q5_K, 256, 176), (WeightFormat.Q6_K, 256, 210),
        ];
        foreach ((WeightFormat format, int weights, int bytes) in expected)
        {
            Assert.Equal(weights, BlockQuantization.WeightsPerBlock(format));
            Assert.Equal(bytes, BlockQuantization.BytesPerBlock(format));
            Assert.Equal(5632L / weights * bytes, BlockQuantization.RowBytes(format, 5632));
        }
    }

    [Fact]
    public void ArgumentsAreChecked()
    {
        Assert.Throws<ArgumentException>(() => BlockQuantization.RowBytes(WeightFormat.Q4_K, 288));
        Assert.Throws<ArgumentException>(() => BlockQuantization.RowBytes(WeightFormat.Q5_1, 48));
        Assert.Throws<ArgumentOutOfRangeException>(() => BlockQuantization.RowBytes(WeightFormat.Q4_K_M, 256));
        Assert.Throws<ArgumentOutOfRangeException>(() => BlockQuantization.RowBytes(WeightFormat.Q6_K, -256));
        Assert.Throws<ArgumentOutOfRangeException>(() => BlockQuantization.WeightsPerBlock((WeightFormat)99));
        Assert.Throws<ArgumentException>(() => BlockQuantization.Quantize(WeightFormat.Q6_K, new float[288], new byte[1000]));
        Assert.Throws<ArgumentException>(() => BlockQuantization.Quantize(WeightFormat.Q4_K, new float[256], new byte[143]));
        Assert.Throws<ArgumentException>(() => BlockQuantization.Dequantize(WeightFormat.Q5_0, new byte[21], new float[32]));
        Assert.Throws<ArgumentOutOfRangeException>(() => BlockQuantization.Dequantize(WeightFormat.F16, new byte[64], new float[32]));
        Assert.Throws<ArgumentException>(() => BlockKernels.QuantizeQ8K(new float[300], new sbyte[300], new float[2], new short[20]));
        Assert.Throws<ArgumentException>(() => BlockKernels.QuantizeQ8K(new float[256], new sbyte[256], new float[1], new short[15]));
        Assert.Throws<ArgumentException>(() => BlockKernels.QuantizeQ8_1(new float[64], new sbyte[64], new float[2], new float[1]));
    }

    [Theory]
    [MemberData(nameof(Formats))]
    public void RoundTripIsCloseAndSpecialBlocksAreExact(WeightFormat format)
    {
        var random = new Random(7 + (int)format);
        int n = 8 * 256;
        float[] x = Enumerable.Range(0, n).Select(_ => Gaussian(random)).ToArray();
        x[100] = 40f; // an outlier
        Array.Clear(x, 512, 256); // a super-block of zeros
        Array.Fill(x, 0.25f, 1024, 256); // of equal values
        byte[] q = new byte[BlockQuantization.RowBytes(format, n)];
        BlockQuantization.Quantize(format, x, q);
        float[] y = new float[n];
        BlockQuantization.Dequantize(format, q, y);

        Assert.All(y.AsSpan(512, 256).ToArray(), v => Assert.Equal(0f, v));
        Assert.All(y.AsSpan(1024, 256).ToArray(), v => Assert.Equal(0.25f, v, 0.25f * 0.01f));
        double rms = Math.Sqrt(Enumerable.Range(1280, n - 1280).Average(i => (double)(x[i] - y[i]) * (x[i] - y[i])));
        double bound = format switch
        {
            WeightFormat.Q4_1 or WeightFormat.Q4_K => 0.12,
            WeightFormat.Q6_K => 0.03,
            _ => 0.06,
        };
        Assert.True(rms < bound, $"{format}: rms error {rms} of unit Gaussian weights");
    }

    [Fact]
    public void Q8KActivationsFollowTheReference()
    {
        var random = new Random(3);
        float[] x = Enumerable.Range(0, 3 * 256).Select(_ => Gaussian(random) * 3).ToArray();
        x[300] = -20f; // the block's extreme is negative: iscale > 0, and it maps to −127 as a positive one would
        Array.Clear(x, 512, 256);
        sbyte[] q = new sbyte[x.Length];
        float[] d = new float[3];
        short[] bsums = new short[48];
        BlockKernels.QuantizeQ8K(x, q, d, bsums);
        for (int b = 0; b < 3; b++)
        {
            float max = 0f, amax = 0f;
            for (int j = 0; j < 256; j++)
            {
                if (MathF.Abs(x[256 * b + j]) > amax)
                {
                    amax = MathF.Abs(x[256 * b + j]);
                    max = x[256 * b + j];
                }
            }
            float iscale = amax == 0f ? 0f : -127f / max;
            Assert.Equal(amax == 0f ? 0f : 1f / iscale, d[b]);
            for (int j = 0; j < 256; j++)
                Assert.Equal((int)Math.Min(127, MathF.Round(iscale * x[256 * b + j])), q[256 * b + j]);
            for (int j = 0; j < 16; j++)
                Assert.Equal(Enumerable.Range(0, 16).Sum(i => q[256 * b + 16 * j + i]), bsums[16 * b + j]);
        }
        Assert.Equal(-127, q[300]);
    }

    [Fact]
    public void Q8_1SumsAreF16OfTheUnroundedScaleTimesTheSum()
    {
        var random = new Random(4);
        float[] x = Enumerable.Range(0, 64 * 32).Select(_ => Gaussian(random)).ToArray();
        sbyte[] q = new sbyte[x.Length], q0 = new sbyte[x.Length];
        float[] d = new float[64], s = new float[64], d0 = new float[64];
        int[] sums = new int[64];
        BlockKernels.QuantizeQ8_1(x, q, d, s);
        BlockKernels.QuantizeBlocks(x, q0, d0, sums);
        Assert.Equal(q0, q);
        Assert.Equal(d0, d);
        for (int b = 0; b < 64; b++)
        {
            float max = Enumerable.Range(0, 32).Max(j => MathF.Abs(x[32 * b + j]));
            Assert.Equal((float)(Half)(max / 127f * sums[b]), s[b]);
        }
    }

    internal static float Gaussian(Random random) =>
        (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
}

/// <summary>
/// The row dot products of <see cref="QuantizedRows"/> against Σ dequant(w)·dequant(x) in double, on random blocks
/// (random bytes with finite scales: every bit pattern of the weights) and on quantized Gaussian rows, for several
/// lengths, one token and four. <c>PrimitiveInstructionSetTests</c> runs this class again with AVX-VNNI, AVX2 and AVX
/// hidden, so each instruction path is checked on this machine.
/// </summary>
public sealed class QuantizedRowsTests
{
    public static readonly TheoryData<WeightFormat, int> Cases = Build();

    private static TheoryData<WeightFormat, int> Build()
    {
        var data = new TheoryData<WeightFormat, int>();
        foreach (WeightFormat format in new[] { WeightFormat.Q4_1, WeightFormat.Q5_0, WeightFormat.Q5_1, WeightFormat.Q4_K, WeightFormat.Q5_K, WeightFormat.Q6_K })
        {
            foreach (int blocks in new[] { 1, 2, 3, 8, 22 })
                data.Add(format, blocks);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void RowsMatchTheDequantizedProduct(WeightFormat format, int blocks)
    {
        int cols = blocks * BlockQuantization.WeightsPerBlock(format);
        var random = new Random(cols + 31 * (int)format);
        for (int trial = 0; trial < 4; trial++)
        {
            byte[] row = trial % 2 == 0 ? RandomBlocks(format, blocks, random) : Quantized(format, cols, random);
            Activations a = Activations.Make(format, cols, 4, random, skewed: trial >= 2);
            float[] w = new float[cols];
            BlockQuantization.Dequantize(format, row, w);

            ref byte r = ref row[0];
            Vector128<float>? four = Row4(format, ref r, blocks, a);
            for (int t = 0; t < 4; t++)
            {
                (double expected, double magnitude) = a.Reference(format, w, row, t);
                float one = Row(format, ref r, blocks, a, t);
                double tolerance = 2e-6 * magnitude + 1e-30;
                Assert.True(Math.Abs(one - expected) <= tolerance, $"{format} × {blocks} blocks, trial {trial}, token {t}: {one} vs {expected} (|w·x| {magnitude})");
                if (four is { } rows4)
                    Assert.True(Math.Abs(rows4[t] - one) <= 1e-6 * magnitude + 1e-30, $"{format} × {blocks} blocks, trial {trial}, token {t}: Row4 {rows4[t]} vs Row {one}");
            }
        }
    }

    private static float Row(WeightFormat format, ref byte row, int blocks, Activations a, int t)
    {
        int k = a.ScalesPerToken, cols = a.Cols;
        ref sbyte x = ref a.Q[t * cols];
        ref float scales = ref a.Scales[t * k];
        return format switch
        {
            WeightFormat.Q4_1 => QuantizedRows.Q4_1Row(ref row, blocks, ref x, ref scales, ref a.FloatSums[t * k]),
            WeightFormat.Q5_0 => QuantizedRows.Q5_0Row(ref row, blocks, ref x, ref scales, ref a.IntSums[t * k]),
            WeightFormat.Q5_1 => QuantizedRows.Q5_1Row(ref row, blocks, ref x, ref scales, ref a.FloatSums[t * k]),
            WeightFormat.Q4_K => QuantizedRows.Q4_KRow(ref row, blocks, ref x, ref scales, ref a.Bsums[t * k * 16]),
            WeightFormat.Q5_K => QuantizedRows.Q5_KRow(ref row, blocks, ref x, ref scales, ref a.Bsums[t * k * 16]),
            _ => QuantizedRows.Q6_KRow(ref row, blocks, ref x, ref scales, ref a.Bsums[t * k * 16]),
        };
    }

    /// <summary>The 4-token row product; none for Q6_K, whose prefill runs the generated tiles over Q6KGroups (Q6KGroupsTests).</summary>
    private static Vector128<float>? Row4(WeightFormat format, ref byte row, int blocks, Activations a) => format switch
    {
        WeightFormat.Q4_1 => QuantizedRows.Q4_1Row4(ref row, blocks, ref a.Q[0], ref a.Scales[0], ref a.FloatSums[0], a.Cols),
        WeightFormat.Q5_0 => QuantizedRows.Q5_0Row4(ref row, blocks, ref a.Q[0], ref a.Scales[0], ref a.IntSums[0], a.Cols),
        WeightFormat.Q5_1 => QuantizedRows.Q5_1Row4(ref row, blocks, ref a.Q[0], ref a.Scales[0], ref a.FloatSums[0], a.Cols),
        WeightFormat.Q4_K => QuantizedRows.Q4_KRow4(ref row, blocks, ref a.Q[0], ref a.Scales[0], ref a.Bsums[0], a.Cols),
        WeightFormat.Q5_K => QuantizedRows.Q5_KRow4(ref row, blocks, ref a.Q[0], ref a.Scales[0], ref a.Bsums[0], a.Cols),
        _ => null,
    };

    /// <summary>Random bytes with every F16 scale field set to a finite value: all bit patterns of weights, scales and mins.</summary>
    internal static byte[] RandomBlocks(WeightFormat format, int blocks, Random random)
    {
        int bytes = BlockQuantization.BytesPerBlock(format);
        byte[] row = new byte[blocks * bytes];
        random.NextBytes(row);
        int[] halves = format switch
        {
            WeightFormat.Q5_0 => [0],
            WeightFormat.Q6_K => [208],
            _ => [0, 2],
        };
        for (int b = 0; b < blocks; b++)
        {
            foreach (int offset in halves)
                BinaryPrimitives.WriteHalfLittleEndian(row.AsSpan(b * bytes + offset), (Half)((random.NextDouble() * 2 - 1) * 0.01));
        }
        return row;
    }

    internal static byte[] Quantized(WeightFormat format, int cols, Random random)
    {
        float[] x = Enumerable.Range(0, cols).Select(_ => KQuantizationTests.Gaussian(random) * 0.02f).ToArray();
        byte[] row = new byte[BlockQuantization.RowBytes(format, cols)];
        BlockQuantization.Quantize(format, x, row);
        return row;
    }

    /// <summary>Activations of <see cref="Tokens"/> tokens quantized as the format's kernels take them, laid out as the Row4 forms read them.</summary>
    internal sealed class Activations
    {
        public required int Cols { get; init; }
        public required int ScalesPerToken { get; init; }
        public required float[] X { get; init; }
        public required sbyte[] Q { get; init; }
        public required float[] Scales { get; init; }
        public int[] IntSums { get; init; } = [];
        public float[] FloatSums { get; init; } = [];
        public short[] Bsums { get; init; } = [];

        public static Activations Make(WeightFormat format, int cols, int tokens, Random random, bool skewed)
        {
            // Skewed activations (all of one sign) make the offset terms (mins, −16, −32) large against the result.
            float[] x = Enumerable.Range(0, cols * tokens).Select(_ => skewed ? MathF.Abs(KernelsGaussian(random)) + 0.5f : KernelsGaussian(random)).ToArray();
            sbyte[] q = new sbyte[x.Length];
            bool k = format is WeightFormat.Q4_K or WeightFormat.Q5_K or WeightFormat.Q6_K;
            int perToken = k ? cols / 256 : cols / 32;
            float[] scales = new float[perToken * tokens];
            if (k)
            {
                short[] bsums = new short[cols / 16 * tokens];
                BlockKernels.QuantizeQ8K(x, q, scales, bsums);
                return new Activations { Cols = cols, ScalesPerToken = perToken, X = x, Q = q, Scales = scales, Bsums = bsums };
            }
            if (format == WeightFormat.Q5_0)
            {
                int[] sums = new int[scales.Length];
                BlockKernels.QuantizeBlocks(x, q, scales, sums);
                return new Activations { Cols = cols, ScalesPerToken = perToken, X = x, Q = q, Scales = scales, IntSums = sums };
            }
            float[] s = new float[scales.Length];
            BlockKernels.QuantizeQ8_1(x, q, scales, s);
            return new Activations { Cols = cols, ScalesPerToken = perToken, X = x, Q = q, Scales = scales, FloatSums = s };
        }

        private static float KernelsGaussian(Random random) => KQuantizationTests.Gaussian(random);

        /// <summary>
        /// Σ w·(q·d) for token t in double, and Σ|w·(q·d)|. For Q4_1/Q5_1 the minimum's term uses ggml's F16 <c>s</c>
        /// in place of d·Σq, as ggml's dot product does.
        /// </summary>
        public (double Value, double Magnitude) Reference(WeightFormat format, float[] w, byte[] row, int t)
        {
            double value = 0, magnitude = 0;
            int block = format is WeightFormat.Q4_1 or WeightFormat.Q5_0 or WeightFormat.Q5_1 ? 32 : 256;
            for (int i = 0; i < Cols; i++)
            {
                double term = (double)w[i] * Q[t * Cols + i] * Scales[t * ScalesPerToken + i / block];
                value += term;
                magnitude += Math.Abs(term);
            }
            if (format is WeightFormat.Q4_1 or WeightFormat.Q5_1)
            {
                int bytes = BlockQuantization.BytesPerBlock(format);
                for (int b = 0; b < Cols / 32; b++)
                {
                    double m = (double)BinaryPrimitives.ReadHalfLittleEndian(row.AsSpan(b * bytes + 2));
                    int sum = 0;
                    for (int j = 0; j < 32; j++)
                        sum += Q[t * Cols + 32 * b + j];
                    value += m * (FloatSums[t * ScalesPerToken + b] - (double)Scales[t * ScalesPerToken + b] * sum);
                }
            }
            return (value, magnitude);
        }
    }
}
