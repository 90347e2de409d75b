using System;
using System.Globalization;
using System.IO;
using System.Linq;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>The compiled stories260K against llama2.c's own logits (run.c, 16 greedy steps from BOS).</summary>
public sealed class ReferenceLogitsTests
{
    private const int Steps = 16;
    private const float Tolerance = 1e-4f;

    internal static int[] ReferenceTokens() =>
        File.ReadAllLines(Path.Combine(TestPaths.Stories260K, "reference", "tokens_greedy_noprompt_16.txt"))
            .Where(line => !line.StartsWith('#') && line.Trim().Length > 0)
            .Select(line => int.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture))
            .ToArray();

    internal static float[] ReferenceLogits()
    {
        byte[] bytes = File.ReadAllBytes(Path.Combine(TestPaths.Stories260K, "reference", "logits_greedy_noprompt_16x512.f32"));
        float[] logits = new float[bytes.Length / sizeof(float)];
        Buffer.BlockCopy(bytes, 0, logits, 0, bytes.Length);
        return logits;
    }

    [Fact]
    public void DecodeMatchesLlama2cForAll16Steps()
    {
        int[] tokens = ReferenceTokens();
        float[] reference = ReferenceLogits();
        Assert.Equal(Steps, tokens.Length);
        Assert.Equal(Steps * Stories260K.VocabSize, reference.Length);

        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession();
        for (int step = 0; step < Steps; step++)
        {
            Assert.Equal(step, session.Position);
            ReadOnlySpan<float> logits = session.Forward(tokens[step]);
            float maxDiff = MaxAbsDiff(logits, reference.AsSpan(step * Stories260K.VocabSize, Stories260K.VocabSize));
            Assert.True(maxDiff <= Tolerance, $"step {step}: max |logit - llama2.c| = {maxDiff}");
            if (step + 1 < Steps)
                Assert.Equal(tokens[step + 1], ArgMax(logits));
        }
    }

    [Fact]
    public void BatchedPrefillGivesTheSameLogitsAsTokenByToken()
    {
        int[] tokens = ReferenceTokens();
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var stepwise = model.CreateSession();
        float[] expected = Array.Empty<float>();
        foreach (int token in tokens)
            expected = stepwise.Forward(token).ToArray();

        using var batched = model.CreateSession();
        float[] actual = batched.Forward(tokens).ToArray();
        Assert.Equal(tokens.Length, batched.Position);
        Assert.True(MaxAbsDiff(actual, expected) <= 1e-5f, $"max diff {MaxAbsDiff(actual, expected)}");

        // Prefill then decode continues exactly like decoding all along.
        batched.Reset();
        batched.Forward(tokens.AsSpan(0, 7));
        float[] continued = Array.Empty<float>();
        foreach (int token in tokens.AsSpan(7))
            continued = batched.Forward(token).ToArray();
        Assert.True(MaxAbsDiff(continued, expected) <= 1e-5f);
    }

    internal static float MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        float max = 0;
        for (int i = 0; i < a.Length; i++)
            max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }

    internal static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++)
        {
            if (values[i] > values[best])
                best = i;
        }
        return best;
    }
}
