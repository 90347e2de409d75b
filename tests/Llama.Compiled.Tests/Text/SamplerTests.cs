using System;
using System.Collections.Generic;
using System.Linq;
using Xunit;

namespace Llama.Compiled.Tests;

public class SamplerTests
{
    // Probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1.
    private static readonly float[] FourTokens = [MathF.Log(0.5f), MathF.Log(0.3f), MathF.Log(0.15f), MathF.Log(0.05f)];

    private static float[] RandomLogits(int count, int seed, float scale = 3f)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
    }

    private static int[] Draw(Sampler sampler, float[] logits, int count, int[]? recent = null) =>
        Enumerable.Range(0, count).Select(_ => sampler.Sample(logits, recent ?? [])).ToArray();

    private static int ArgMax(float[] values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
                best = i;
        }
        return best;
    }

    [Fact]
    public void ASeedReproducesTheTokensAndAnotherSeedDoesNot()
    {
        float[] logits = RandomLogits(512, 1, scale: 1f);
        var options = new SamplingOptions { Seed = 42 };

        int[] first = Draw(new Sampler(512, options), logits, 200);
        int[] second = Draw(new Sampler(512, options), logits, 200);
        int[] other = Draw(new Sampler(512, options with { Seed = 43 }), logits, 200);

        Assert.Equal(first, second);
        Assert.NotEqual(first, other);
        Assert.Equal(42UL, new Sampler(512, options).Seed);
    }

    [Fact]
    public void WithoutASeedTwoSamplersDiffer()
    {
        float[] logits = new float[512];

        Assert.NotEqual(Draw(new Sampler(512, new SamplingOptions()), logits, 50), Draw(new Sampler(512, new SamplingOptions()), logits, 50));
    }

    [Fact]
    public void GreedyIsTheArgMaxAndTheLowestIndexOnTies()
    {
        var sampler = new Sampler(1000, new SamplingOptions { Temperature = 0f, TopP = 0.5f, TopK = 3 });
        for (int seed = 0; seed < 20; seed++)
        {
            float[] logits = RandomLogits(1000, seed);
            Assert.Equal(ArgMax(logits), sampler.Sample(logits, []));
        }

        float[] ties = new float[1000];
        ties[7] = ties[300] = ties[999] = 5f;
        Assert.Equal(7, sampler.Sample(ties, []));
    }

    [Fact]
    public void TopKOfOneIsTheArgMax()
    {
        var sampler = new Sampler(32000, new SamplingOptions { TopK = 1, Temperature = 1.5f, Seed = 3 });
        for (int seed = 0; seed < 20; seed++)
        {
            float[] logits = RandomLogits(32000, seed);
            Assert.Equal(ArgMax(logits), sampler.Sample(logits, []));
        }
    }

    [Theory]
    [InlineData(0, 1f, 0f, new[] { 0, 1, 2, 3 })]
    [InlineData(2, 1f, 0f, new[] { 0, 1 })]
    [InlineData(0, 0.7f, 0f, new[] { 0, 1 })]      // 0.5 ≤ 0.7 < 0.8
    [InlineData(0, 0.85f, 0f, new[] { 0, 1, 2 })]  // 0.8 ≤ 0.85 < 0.95
    [InlineData(0, 0f, 0f, new[] { 0 })]           // top-p keeps at least one token
    [InlineData(0, 1f, 0.25f, new[] { 0, 1, 2 })]  // 0.15 ≥ 0.25 * 0.5 > 0.05
    [InlineData(0, 1f, 0.7f, new[] { 0 })]         // 0.3 < 0.7 * 0.5
    [InlineData(3, 0.82f, 0f, new[] { 0, 1 })]     // renormalized over the top 3: 0.8 / 0.95 > 0.82
    [InlineData(0, 0.9f, 0.5f, new[] { 0, 1 })]    // top-p keeps 0..2, min-p then drops 0.15 < 0.25
    public void FiltersKeepTheRightTokens(int topK, float topP, float minP, int[] expected)
    {
        var sampler = new Sampler(4, new SamplingOptions { TopK = topK, TopP = topP, MinP = minP, Seed = 7 });

        int[] drawn = Draw(sampler, FourTokens, 4000);

        Assert.Equal(expected, drawn.Distinct().Order());
    }

    [Fact]
    public void DrawsFollowTheProbabilities()
    {
        var sampler = new Sampler(4, new SamplingOptions { Seed = 11 });

        int[] drawn = Draw(sampler, FourTokens, 40000);

        double[] expected = [0.5, 0.3, 0.15, 0.05];
        for (int token = 0; token < 4; token++)
            Assert.InRange(drawn.Count(t => t == token) / 40000.0, expected[token] - 0.01, expected[token] + 0.01);
    }

    [Fact]
    public void TemperatureReshapesTheDistribution()
    {
        // At T = 0.5 the probabilities are proportional to p²: 0.25 / (0.25 + 0.09 + 0.0225 + 0.0025) for token 0.
        var sampler = new Sampler(4, new SamplingOptions { Temperature = 0.5f, Seed = 5 });

        int[] drawn = Draw(sampler, FourTokens, 40000);

        Assert.InRange(drawn.Count(t => t == 0) / 40000.0, 0.25 / 0.365 - 0.01, 0.25 / 0.365 + 0.01);
    }

    [Fact]
    public void TopPOnALargeVocabularyKeepsExactlyTheNucleus()
    {
        // 100 likely tokens and a flat tail: the nucleus for p = 0.9 is the 100 plus the
        // lowest-numbered part of the tail (ties are broken by id), so the sorting path and the
        // tie order both matter. A draw past the boundary would be a bug.
        const int vocab = 32000;
        const float p = 0.9f;
        float[] logits = new float[vocab];
        for (int i = 0; i < 100; i++)
            logits[i * 97] = 5f;
        HashSet<int> nucleus = Nucleus(logits, p);
        Assert.InRange(nucleus.Count, 20000, 30000);

        var sampler = new Sampler(vocab, new SamplingOptions { TopP = p, Seed = 9 });
        int[] drawn = Draw(sampler, logits, 3000);

        Assert.All(drawn, t => Assert.Contains(t, nucleus));
        // Draws do reach the tail up to its boundary, so the test would see a wrong boundary.
        int boundary = nucleus.Max();
        Assert.Contains(drawn, t => t > boundary - 2000);
    }

    [Fact]
    public void TopPOnRandomLogitsStaysInTheNucleus()
    {
        float[] logits = RandomLogits(32000, 21, scale: 8f);
        HashSet<int> nucleus = Nucleus(logits, 0.8f);
        var sampler = new Sampler(32000, new SamplingOptions { TopP = 0.8f, Seed = 1 });

        int[] drawn = Draw(sampler, logits, 2000);

        Assert.All(drawn, t => Assert.Contains(t, nucleus));
        Assert.True(drawn.Distinct().Count() > Math.Min(10, nucleus.Count / 2));
    }

    /// <summary>The nucleus by brute force: full sort (most likely first, lower id first), smallest prefix above p.</summary>
    private static HashSet<int> Nucleus(float[] logits, float p)
    {
        double max = logits.Max();
        double[] weights = logits.Select(l => Math.Exp(l - max)).ToArray();
        double total = weights.Sum();
        var result = new HashSet<int>();
        double cumulative = 0;
        foreach (int id in Enumerable.Range(0, logits.Length).OrderByDescending(i => weights[i]).ThenBy(i => i))
        {
            result.Add(id);
            cumulative += weights[id] / total;
            if (cumulative > p)
                break;
        }
        return result;
    }

    [Fact]
    public void RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOncePerToken()
    {
        var options = new SamplingOptions { Temperature = 0f, RepetitionPenalty = 1.5f };

        // 2 / 1.5 = 1.33 < 1.9
        Assert.Equal(1, new Sampler(3, options).Sample([2f, 1.9f, 0f], [0]));
        // -1 * 1.5 = -1.5 < -1.2
        Assert.Equal(1, new Sampler(3, options).Sample([-1f, -1.2f, -3f], [0]));
        // Applied once however often the token occurs: 2 / 1.5 = 1.33 > 1 (three times would be 0.59).
        Assert.Equal(0, new Sampler(3, options).Sample([2f, 1f, 0f], [0, 0, 0]));
        // Only the last RepetitionWindow tokens count.
        Assert.Equal(0, new Sampler(3, options with { RepetitionWindow = 1 }).Sample([2f, 1.9f, 0f], [0, 2]));
        // Off at 1.
        Assert.Equal(0, new Sampler(3, options with { RepetitionPenalty = 1f }).Sample([2f, 1.9f, 0f], [0]));
    }

    [Fact]
    public void TheCallersLogitsAreNotModified()
    {
        float[] logits = RandomLogits(64, 4);
        float[] copy = (float[])logits.Clone();
        var sampler = new Sampler(64, new SamplingOptions { Temperature = 0.7f, TopP = 0.9f, RepetitionPenalty = 1.3f, Seed = 1 });

        sampler.Sample(logits, [1, 2, 3]);

        Assert.Equal(copy, logits);
    }

    [Theory]
    [InlineData(nameof(SamplingOptions.Temperature), -0.1f)]
    [InlineData(nameof(SamplingOptions.Temperature), float.NaN)]
    [InlineData(nameof(SamplingOptions.Temperature), float.PositiveInfinity)]
    [InlineData(nameof(SamplingOptions.TopK), -1f)]
    [InlineData(nameof(SamplingOptions.TopP), 1.01f)]
    [InlineData(nameof(SamplingOptions.TopP), -0.5f)]
    [InlineData(nameof(SamplingOptions.MinP), 1.5f)]
    [InlineData(nameof(SamplingOptions.MinP), float.NaN)]
    [InlineData(nameof(SamplingOptions.RepetitionPenalty), 0f)]
    [InlineData(nameof(SamplingOptions.RepetitionWindow), -1f)]
    public void InvalidOptionsThrowWithTheirName(string name, float value)
    {
        SamplingOptions options = name switch
        {
            nameof(SamplingOptions.Temperature) => new() { Temperature = value },
            nameof(SamplingOptions.TopK) => new() { TopK = (int)value },
            nameof(SamplingOptions.TopP) => new() { TopP = value },
            nameof(SamplingOptions.MinP) => new() { MinP = value },
            nameof(SamplingOptions.RepetitionPenalty) => new() { RepetitionPenalty = value },
            _ => new() { RepetitionWindow = (int)value },
        };

        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(512, options));

        Assert.Equal(name, e.ParamName);
    }

    [Fact]
    public void InvalidArgumentsThrow()
    {
        Assert.Throws<ArgumentOutOfRangeException>("vocabSize", () => new Sampler(0, new SamplingOptions()));
        Assert.Throws<ArgumentNullException>("options", () => new Sampler(4, null!));
        var sampler = new Sampler(4, new SamplingOptions { RepetitionPenalty = 1.2f });
        Assert.Throws<ArgumentException>("logits", () => sampler.Sample(new float[5], []));
        Assert.Throws<ArgumentOutOfRangeException>("recentTokens", () => sampler.Sample(new float[4], [4]));
    }
}
