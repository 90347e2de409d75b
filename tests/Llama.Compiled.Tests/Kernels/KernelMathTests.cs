using System;
using System.Linq;
using System.Runtime.Intrinsics;
using Llama.Compiled.CompilerServices;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>The runtime's vector primitives against double-precision references and .NET's own conversions.</summary>
public sealed class KernelMathTests
{
    [Fact]
    public void ExpIsWithinTwoUlpOfTheExactValueOverItsWholeRange()
    {
        double worst = 0;
        float worstAt = 0;
        for (float x = -86f; x <= 88.37f; x += 0.000731f * (1 + MathF.Abs(x)))
        {
            float actual = KernelMath.Exp(x);
            double exact = Math.Exp(x);
            double ulp = (double)MathF.BitIncrement((float)exact) - (float)exact; // one float ulp at the exact value
            double error = Math.Abs(actual - exact) / ulp;
            if (error > worst)
                (worst, worstAt) = (error, x);
        }
        Assert.True(worst <= 2, $"worst error {worst:F2} ulp at x = {worstAt:R}");
    }

    [Theory]
    [InlineData(float.NegativeInfinity, 0f)]
    [InlineData(-1000f, 0f)]
    [InlineData(-86.5f, 0f)]
    [InlineData(0f, 1f)]
    [InlineData(88.5f, float.PositiveInfinity)]
    [InlineData(float.PositiveInfinity, float.PositiveInfinity)]
    public void ExpAtTheEdges(float x, float expected) => Assert.Equal(expected, KernelMath.Exp(x));

    [Fact]
    public void ExpOfNaNIsNaN() => Assert.True(float.IsNaN(KernelMath.Exp(float.NaN)));

    [Fact]
    public void EveryLaneOfTheVectorExpEqualsTheScalarOne()
    {
        var random = new Random(5);
        for (int i = 0; i < 1000; i++)
        {
            Vector256<float> x = Vector256.Create(Enumerable.Range(0, 8).Select(_ => (float)(random.NextDouble() * 200 - 100)).ToArray());
            Vector256<float> e = KernelMath.Exp(x);
            for (int lane = 0; lane < 8; lane++)
                Assert.Equal(KernelMath.Exp(x[lane]), e[lane]);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(29)]
    [InlineData(512)]
    public void SoftmaxMatchesADoublePrecisionReference(int length)
    {
        var random = new Random(length);
        float[] x = Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 40 - 20)).ToArray();
        double max = x.Max();
        double total = x.Sum(v => Math.Exp(v - max));
        float[] y = (float[])x.Clone();
        KernelMath.Softmax(y);
        for (int i = 0; i < length; i++)
            Assert.True(Math.Abs(y[i] - Math.Exp(x[i] - max) / total) <= 1e-6 * Math.Max(1e-3, Math.Exp(x[i] - max) / total), $"element {i}: {y[i]} vs {Math.Exp(x[i] - max) / total}");
    }

    [Fact]
    public void IndexOfMaxTakesTheFirstOfEqualMaximaAndTheFirstNaN()
    {
        Assert.Equal(-1, KernelMath.IndexOfMax([]));
        float[] x = new float[37];
        x[12] = 3; x[30] = 3;
        Assert.Equal(12, KernelMath.IndexOfMax(x));
        x[35] = 4;
        Assert.Equal(35, KernelMath.IndexOfMax(x));
        x[20] = float.NaN;
        Assert.Equal(20, KernelMath.IndexOfMax(x));
        Assert.Equal(0, KernelMath.IndexOfMax([float.NegativeInfinity, float.NegativeInfinity]));
    }

    [Fact]
    public void IndexOfMaxAgreesWithTensorPrimitivesOnRandomData()
    {
        var random = new Random(3);
        for (int n = 1; n < 300; n += 7)
        {
            float[] x = Enumerable.Range(0, n).Select(_ => (float)random.Next(-50, 50)).ToArray();
            Assert.Equal(System.Numerics.Tensors.TensorPrimitives.IndexOfMax(x), KernelMath.IndexOfMax(x));
        }
    }

    [Fact]
    public void SumMultiplyDivideAndAddOverEveryTailLength()
    {
        var random = new Random(9);
        for (int n = 0; n < 40; n++)
        {
            float[] x = Enumerable.Range(0, n).Select(_ => (float)random.NextDouble()).ToArray();
            float[] b = Enumerable.Range(0, n).Select(_ => (float)random.NextDouble()).ToArray();
            Assert.Equal(x.Sum(v => (double)v), KernelMath.Sum(x), 4);
            Assert.Equal(n == 0 ? float.NegativeInfinity : x.Max(), KernelMath.Max(x));

            float[] scaled = (float[])x.Clone();
            KernelMath.Multiply(scaled, 3f);
            Assert.Equal(x.Select(v => v * 3f), scaled);
            float[] divided = (float[])x.Clone();
            KernelMath.Divide(divided, 0.7f);
            Assert.Equal(x.Select(v => v / 0.7f), divided);
            float[] added = (float[])x.Clone();
            KernelMath.Add(added, b);
            Assert.Equal(x.Zip(b, (p, q) => p + q), added);
        }
        Assert.Throws<ArgumentException>(() => KernelMath.Add(new float[4], new float[3]));
    }

    [Fact]
    public void ConvertToSingleEqualsDotNetsConversionForEveryHalf()
    {
        Half[] halves = Enumerable.Range(0, 65536).Select(i => BitConverter.UInt16BitsToHalf((ushort)i)).ToArray();
        float[] floats = new float[halves.Length + 3];
        KernelMath.ConvertToSingle(halves, floats);
        for (int i = 0; i < halves.Length; i++)
        {
            float expected = (float)halves[i];
            Assert.True(float.IsNaN(expected) ? float.IsNaN(floats[i]) : BitConverter.SingleToUInt32Bits(expected) == BitConverter.SingleToUInt32Bits(floats[i]),
                $"half 0x{i:X4}: {floats[i]:R}, expected {expected:R}");
        }
        // A tail shorter than a vector takes the scalar path.
        float[] tail = new float[5];
        KernelMath.ConvertToSingle(halves.AsSpan(0x3C00, 5), tail);
        Assert.Equal(halves.Skip(0x3C00).Take(5).Select(h => (float)h), tail);
        Assert.Throws<ArgumentException>(() => KernelMath.ConvertToSingle(new Half[9], new float[8]));
    }
}
