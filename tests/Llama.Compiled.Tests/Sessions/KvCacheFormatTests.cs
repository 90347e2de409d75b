using System;
using System.IO;
using System.Linq;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Tests;

/// <summary>
/// Sessions with an F16 or Q8_0 KV cache (<see cref="SessionOptions.KvCache"/>) on the real stories260K: what the reduced
/// precision costs in logits, and every path that touches the cache (prefill, decode, batch, shift, save/restore).
/// </summary>
public sealed class KvCacheFormatTests(ITestOutputHelper output)
{
    /// <summary>
    /// A stored key or value is off by at most ε of its scale: F16 rounds to 11 significant bits (ε = 2^-11), Q8_0 to half a
    /// step of max|block| / 127 (ε = 1/254). Attention averages values and the residual stream adds each layer's output to
    /// what it had, so a logit moves by the relative error of the attention outputs times the model's gain from them to
    /// the logits; over stories260K's 5 layers that gain is allowed to be 4 (the RMS of the logits' error at most 4·ε of
    /// the logits' RMS), and no single logit moves by more than 16·ε of the largest one.
    /// </summary>
    [Theory]
    [InlineData(KvCacheFormat.F16, 1.0 / 2048)]
    [InlineData(KvCacheFormat.Q8_0, 1.0 / 254)]
    public void ReducedCacheLogitsStayWithinTheFormatsPrecisionOver256Steps(KvCacheFormat format, double epsilon)
    {
        const int Steps = 256;
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var exact = model.CreateSession(new SessionOptions { Threads = 1 });
        using var reduced = model.CreateSession(new SessionOptions { Threads = 1, KvCache = format });
        // Both sessions are fed the exact session's greedy tokens, so every step compares the same inputs.
        int token = Stories260K.BosTokenId, agreed = 0;
        double sumSquaredError = 0, sumSquared = 0, maxError = 0, maxLogit = 0;
        for (int step = 0; step < Steps; step++)
        {
            float[] expected = exact.Forward(token).ToArray();
            ReadOnlySpan<float> actual = reduced.Forward(token);
            for (int i = 0; i < expected.Length; i++)
            {
                double error = actual[i] - expected[i];
                sumSquaredError += error * error;
                sumSquared += (double)expected[i] * expected[i];
                maxError = Math.Max(maxError, Math.Abs(error));
                maxLogit = Math.Max(maxLogit, Math.Abs(expected[i]));
            }
            int next = Reliability.ArgMax(expected);
            agreed += Reliability.ArgMax(actual) == next ? 1 : 0;
            token = next;
        }
        double rmsError = Math.Sqrt(sumSquaredError / (Steps * Stories260K.VocabSize)), rms = Math.Sqrt(sumSquared / (Steps * Stories260K.VocabSize));
        output.WriteLine($"{format} KV vs F32 KV over {Steps} steps: max |Δlogit| {maxError:G3} (max |logit| {maxLogit:G3}), RMS Δ {rmsError:G3} (RMS logit {rms:G3}), greedy agreement {agreed}/{Steps}");
        Assert.True(rmsError <= 4 * epsilon * rms, $"RMS error {rmsError} exceeds 4·ε·RMS = {4 * epsilon * rms}");
        Assert.True(maxError <= 16 * epsilon * maxLogit, $"max error {maxError} exceeds 16·ε·max = {16 * epsilon * maxLogit}");
        Assert.True(maxError > 0, "the reduced cache gave the exact logits: it is not reduced");
    }

    [Theory]
    [InlineData(KvCacheFormat.F16)]
    [InlineData(KvCacheFormat.Q8_0)]
    public void SaveAndRestoreRoundTripAReducedCacheExactlyAndRefuseAnotherFormat(KvCacheFormat format)
    {
        int[] tokens = ReferenceLogitsTests.ReferenceTokens();
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var original = model.CreateSession(new SessionOptions { KvCache = format });
        original.Forward(tokens.AsSpan(0, 10));
        var saved = new MemoryStream();
        original.Save(saved);
        float[] expected = original.Forward(tokens[10]).ToArray();

        using var restored = model.CreateSession(new SessionOptions { KvCache = format });
        saved.Position = 0;
        restored.Restore(saved);
        Assert.Equal(expected, restored.Forward(tokens[10]).ToArray()); // bit-exact

        using var f32 = model.CreateSession();
        saved.Position = 0;
        var e = Assert.Throws<InvalidDataException>(() => f32.Restore(saved));
        Assert.Contains(format.ToString(), e.Message);
        Assert.Equal(0, f32.Position);
    }

    [Theory]
    [InlineData(KvCacheFormat.F16)]
    [InlineData(KvCacheFormat.Q8_0)]
    public void AShiftedReducedCacheFollowsTheShiftedF32Cache(KvCacheFormat format)
    {
        int[] prompt = Reliability.Prompt(4, Stories260KShort.MaxContext);
        using var model = Stories260KShort.Load(TestPaths.Stories260KHf);
        var shift = new SessionOptions { Overflow = ContextOverflow.Shift, KeepTokens = 1, Threads = 1 };
        using var exact = model.CreateSession(shift);
        using var reduced = model.CreateSession(shift with { KvCache = format });
        exact.Forward(prompt);
        reduced.Forward(prompt);
        // The next token shifts both: keys re-rotated (and for the reduced cache stored again in its format).
        float[] expected = exact.Forward(7).ToArray();
        float[] actual = reduced.Forward(7).ToArray();
        Assert.Equal(exact.Position, reduced.Position);
        Assert.True(exact.Position < Stories260KShort.MaxContext);
        double rms = Math.Sqrt(expected.Average(x => (double)x * x));
        double rmsError = Math.Sqrt(expected.Zip(actual, (x, y) => (double)(x - y) * (x - y)).Average());
        // Within the bound of the 256-step test: a key not re-rotated (or rotated twice) moves logits by far more.
        double epsilon = format == KvCacheFormat.F16 ? 1.0 / 2048 : 1.0 / 254;
        Assert.True(rmsError <= 4 * epsilon * rms, $"RMS error {rmsError} against RMS {rms}");
    }

    [Fact]
    public void ABatchMixingCacheFormatsGivesEachSessionItsOwnLogits()
    {
        int[] prompt = Reliability.Prompt(6, 40);
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        KvCacheFormat[] formats = [KvCacheFormat.F32, KvCacheFormat.F16, KvCacheFormat.Q8_0];
        var solo = formats.Select(f => model.CreateSession(new SessionOptions { KvCache = f, Threads = 1 })).ToArray();
        var batched = formats.Select(f => model.CreateSession(new SessionOptions { KvCache = f, Threads = 1 })).ToArray();
        using var batch = model.CreateBatch(new BatchOptions { Threads = 1, MaxTokens = 64 });
        batch.Forward(batched.Select((s, i) => new BatchItem(s, prompt.AsMemory(0, 20 + i))).ToArray());
        batch.Forward(batched.Select(s => new BatchItem(s, new[] { 9 })).ToArray());
        for (int i = 0; i < formats.Length; i++)
        {
            solo[i].Forward(prompt.AsSpan(0, 20 + i));
            float[] expected = solo[i].Forward(9).ToArray();
            Assert.True(ReferenceLogitsTests.MaxAbsDiff(expected, batched[i].Logits) <= 1e-4f, $"{formats[i]}: max diff {ReferenceLogitsTests.MaxAbsDiff(expected, batched[i].Logits)}");
            solo[i].Dispose();
            batched[i].Dispose();
        }
    }

    [Fact]
    public void KvCacheBytesFollowTheFormat()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        long values = 2L * Stories260K.LayerCount * Stories260K.KvHeadCount * Stories260K.MaxContext * Stories260K.HeadDim;
        using var f32 = model.CreateSession(new SessionOptions { KvCache = KvCacheFormat.F32 });
        using var f16 = model.CreateSession(new SessionOptions { KvCache = KvCacheFormat.F16 });
        using var q8 = model.CreateSession(new SessionOptions { KvCache = KvCacheFormat.Q8_0 });
        Assert.Equal(values * 4, f32.KvCacheBytes);
        Assert.Equal(values * 2, f16.KvCacheBytes);
        Assert.Equal(values + values / Stories260K.HeadDim * 4, q8.KvCacheBytes); // HeadDim 8: one block, one float scale per head row
        Assert.Throws<ArgumentOutOfRangeException>(() => model.CreateSession(new SessionOptions { KvCache = (KvCacheFormat)7 }));
    }
}

/// <summary>Attention over long contexts: its scratch is a tile per thread, and a prefill of the whole context is exact.</summary>
public sealed class LongContextAttentionTests
{
    /// <summary>
    /// What a session's first Forward allocates (its worker pool and forward pass, the attention scratch included), measured
    /// on this thread after a warm-up session of the same model has run.
    /// </summary>
    private static long FirstForwardBytes(Func<SessionOptions, ILlamaSession> createSession)
    {
        using var session = createSession(new SessionOptions { Threads = 2 });
        long before = GC.GetAllocatedBytesForCurrentThread();
        session.Forward(1);
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }

    [Fact]
    public void ThePassScratchDoesNotGrowWithTheContext()
    {
        // The same weights compiled for 512 and 256 positions: the same activation buffers, and an attention scratch that
        // does not depend on MaxContext (it was [Threads, GroupSize, MaxContext], 4 KB more here for the longer context).
        using var full = Stories260K.Load(TestPaths.Stories260KHf);
        using var half = Stories260KShort.Load(TestPaths.Stories260KHf);
        FirstForwardBytes(full.CreateSession);
        FirstForwardBytes(half.CreateSession);
        Assert.Equal(FirstForwardBytes(half.CreateSession), FirstForwardBytes(full.CreateSession));
    }

    [Fact]
    public void APrefillOfTheWholeContextGivesTheLogitsOfTokenByToken()
    {
        int[] prompt = Reliability.Prompt(8, Stories260K.MaxContext);
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var batched = model.CreateSession(new SessionOptions { Threads = 2 });
        using var stepped = model.CreateSession(new SessionOptions { Threads = 2 });
        float[] expected = [];
        foreach (int token in prompt)
            expected = stepped.Forward(token).ToArray();
        float[] actual = batched.Forward(prompt).ToArray();
        Assert.True(ReferenceLogitsTests.MaxAbsDiff(expected, actual) <= 1e-4f, $"max diff {ReferenceLogitsTests.MaxAbsDiff(expected, actual)}");
    }
}
