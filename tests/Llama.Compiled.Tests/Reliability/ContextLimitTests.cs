using System;
using System.Linq;
using Microsoft.ML.Tokenizers;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>What a session does at MaxContext: throw by default (nothing evaluated), or shift the window.</summary>
public sealed class ContextLimitTests
{
    private const int Max = Stories260K.MaxContext;

    [Fact]
    public void ForwardOfMoreTokensThanFitThrowsAndChangesNothing()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession();
        int[] tokens = Reliability.Prompt(1, Max + 1);
        session.Forward(tokens.AsSpan(0, Max - 12));
        float[] before = session.Logits.ToArray();

        var e = Assert.Throws<InvalidOperationException>(() => session.Forward(tokens.AsSpan(Max - 12, 13)));
        Assert.Contains("MaxContext", e.Message);
        Assert.Contains((Max - 12).ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message); // the position
        Assert.Equal(Max - 12, session.Position);
        Assert.Equal(before, session.Logits.ToArray());

        // What fits still runs, and the cache was not touched by the rejected call.
        float[] last = session.Forward(tokens.AsSpan(Max - 12, 12)).ToArray();
        Assert.Equal(Max, session.Position);
        using var fresh = model.CreateSession();
        // Within float rounding, not bitwise: 500 + 12 tokens take other prefill kernels (a padded panel, 4-token tiles)
        // than 512 in whole panels, which sum in another order; a cache the rejected call had touched would differ by far more.
        float[] whole = fresh.Forward(tokens.AsSpan(0, Max)).ToArray();
        for (int i = 0; i < whole.Length; i++)
            Assert.True(MathF.Abs(whole[i] - last[i]) <= 1e-4f * Math.Max(1f, MathF.Abs(whole[i])), $"logit {i}: {last[i]} against {whole[i]}");

        // Full: one more token throws, Reset makes room again.
        Assert.Throws<InvalidOperationException>(() => session.Forward(1));
        Assert.Equal(Max, session.Position);
        session.Reset();
        fresh.Reset();
        Assert.Equal(fresh.Forward(1).ToArray(), session.Forward(1).ToArray());
    }

    [Fact]
    public void PromptLongerThanTheContextIsRejectedUpFront()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession();
        Assert.Throws<InvalidOperationException>(() => session.Forward(Reliability.Prompt(2, Max + 1)));
        Assert.Equal(0, session.Position);

        // TextGenerator checks a prompt longer than the context before evaluating anything.
        var generator = new TextGenerator(session, LlamaTokenizers.Load(TestPaths.Stories260KHf));
        Assert.Throws<ArgumentException>(() => generator.Generate(Reliability.Prompt(3, Max + 1)));
        Assert.Equal(0, session.Position);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(32)]
    public void ShiftedSessionDecodesForThreeContextsOfTokens(int keep)
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession(new SessionOptions { Overflow = ContextOverflow.Shift, KeepTokens = keep });
        int token = Stories260K.BosTokenId, shifts = 0, previous = 0, distinct = 0;
        var seen = new bool[Stories260K.VocabSize];
        for (int step = 0; step < 3 * Max; step++)
        {
            ReadOnlySpan<float> logits = session.Forward(token);
            if (session.Position < previous)
                shifts++;
            previous = session.Position;
            Assert.InRange(session.Position, Math.Min(step + 1, keep + 1), Max);
            foreach (float logit in logits)
                Assert.True(float.IsFinite(logit), $"step {step}: a logit is {logit}");
            token = Reliability.ArgMax(logits);
            if (!seen[token])
            {
                seen[token] = true;
                distinct++;
            }
        }
        Assert.True(shifts >= 4, $"{shifts} shifts in {3 * Max} steps");
        Assert.True(distinct > 20, $"only {distinct} distinct tokens: the shifted session degenerated");
    }

    [Fact]
    public void ShiftedSessionStaysCloseToAFreshSessionOfTheSameWindow()
    {
        // After a shift, the next logits should be near a fresh session's over the surviving tokens
        // (not equal: deeper layers saw the dropped tokens) and its greedy token mostly the same.
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var shifted = model.CreateSession(new SessionOptions { Overflow = ContextOverflow.Shift, KeepTokens = 1 });
        var history = new System.Collections.Generic.List<int> { Stories260K.BosTokenId };
        int token = Stories260K.BosTokenId;
        int agree = 0, compared = 0;
        using var fresh = model.CreateSession();
        for (int step = 0; step < 2 * Max; step++)
        {
            int before = shifted.Position;
            ReadOnlySpan<float> logits = shifted.Forward(token);
            int next = Reliability.ArgMax(logits);
            if (shifted.Position <= before)
            {
                // Just shifted: the window is BOS + the last Position - 1 tokens of history.
                int kept = shifted.Position - 1;
                fresh.Reset();
                int freshNext = Reliability.ArgMax(fresh.Forward([Stories260K.BosTokenId, .. history.Skip(history.Count - kept)]));
                compared++;
                if (freshNext == next)
                    agree++;
            }
            history.Add(next);
            token = next;
        }
        Assert.True(compared >= 2);
        Assert.True(agree * 2 >= compared, $"the shifted session agreed with a fresh one on {agree} of {compared} shifts");
    }

    [Fact]
    public void ShiftWithPrefillChunksKeepsWorking()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession(new SessionOptions { Overflow = ContextOverflow.Shift, KeepTokens = 4 });
        for (int i = 0; i < 20; i++)
        {
            int[] chunk = Reliability.Prompt(100 + i, 97 + 13 * i % 150);
            ReadOnlySpan<float> logits = session.Forward(chunk);
            Assert.InRange(session.Position, chunk.Length, Max);
            Assert.True(logits.ToArray().All(float.IsFinite));
        }
    }

    [Theory]
    [InlineData(0, 10, Max + 1)]   // more than the whole context
    [InlineData(1, 10, Max)]       // more than MaxContext - KeepTokens
    [InlineData(100, 200, Max - 99)]
    public void ShiftCannotMakeRoomForMoreThanTheUnkeptContext(int keep, int position, int count)
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession(new SessionOptions { Overflow = ContextOverflow.Shift, KeepTokens = keep });
        int[] tokens = Reliability.Prompt(5, position + count);
        session.Forward(tokens.AsSpan(0, position));
        float[] before = session.Logits.ToArray();

        var e = Assert.Throws<InvalidOperationException>(() => session.Forward(tokens.AsSpan(position, count)));
        Assert.Contains("MaxContext", e.Message);
        Assert.Equal(position, session.Position);
        Assert.Equal(before, session.Logits.ToArray());

        // One token fewer fits after a shift.
        session.Forward(tokens.AsSpan(position, count - 1));
        Assert.Equal(Max, session.Position);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(Max)]
    public void KeepTokensOutsideTheContextIsRejected(int keep)
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.CreateSession(new SessionOptions { Overflow = ContextOverflow.Shift, KeepTokens = keep }));
    }

    [Fact]
    public void TextGeneratorStopsAtAFullContextWithContextFull()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession();
        var generator = new TextGenerator(session, LlamaTokenizers.Load(TestPaths.Stories260KHf));
        // A prompt that leaves 5 positions; EOS is a stop token the model may choose, so ban nothing but
        // give it many tokens: the generation must end by ContextFull or EndOfSequence, never throw.
        int[] prompt = Reliability.Prompt(8, Max - 5);
        GenerationResult result = CollectResult(generator, prompt);
        Assert.Contains(result.Stats.StopReason, new[] { StopReason.ContextFull, StopReason.EndOfSequence });
        Assert.True(session.Position <= Max);
    }

    [Fact]
    public void TextGeneratorGeneratesPastTheContextOfAShiftingSession()
    {
        // With Overflow = Shift the session makes room itself, so the generator must not stop at ContextFull; and the
        // ids it knows to be in the cache follow the shift, so that a continued conversation reuses exactly those.
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession(new SessionOptions { Overflow = ContextOverflow.Shift, KeepTokens = 1 });
        var generator = new TextGenerator(session, LlamaTokenizers.Load(TestPaths.Stories260KHf)) { ReuseSessionPrefix = true };
        int[] prompt = Reliability.Prompt(8, Max - 5);
        var options = new GenerationOptions { MaxNewTokens = 40, StopTokenIds = [], Sampling = new SamplingOptions { Temperature = 0.8f, Seed = 3 } };
        var ids = new System.Collections.Generic.List<int>(prompt);
        foreach (string _ in generator.Generate(prompt, options))
        {
        }
        GenerationResult result = generator.LastResult!;
        Assert.NotEqual(StopReason.ContextFull, result.Stats.StopReason);
        if (result.Stats.StopReason == StopReason.MaxNewTokens)
        {
            Assert.Equal(40, result.Stats.GeneratedTokens);
            Assert.True(session.Position < Max, "the session shifted");
        }

    }

    [Fact]
    public void TheGeneratorsRecordOfTheCacheFollowsAContextShift()
    {
        // A scripted session of 16 positions that shifts as LlamaSession does: after a generation that shifted twice,
        // a prompt that extends exactly the ids in the cache is evaluated from where the cache ends.
        int[] script = Enumerable.Range(100, 60).ToArray();
        var (generator, session) = ScriptedGeneration.Create(script, maxContext: 16, new SessionOptions { Overflow = ContextOverflow.Shift, KeepTokens = 2 });
        generator.ReuseSessionPrefix = true;
        int[] prompt = [1, 40, 41, 42, 43, 44, 45, 46, 47, 48];
        var options = new GenerationOptions { MaxNewTokens = 20, Sampling = new SamplingOptions { Temperature = 0f } };
        foreach (string _ in generator.Generate(prompt, options))
        {
        }
        Assert.Equal(StopReason.MaxNewTokens, generator.LastStats!.StopReason);
        Assert.True(session.CacheIds.Count < prompt.Length + 19, "the session shifted");
        Assert.Equal([1, 40], session.CacheIds.Take(2)); // KeepTokens survive

        int[] next = [.. session.CacheIds, 7];
        foreach (string _ in generator.Generate(next, options with { MaxNewTokens = 1 }))
        {
        }
        Assert.Equal(next.Length - 1, generator.LastStats!.ReusedPromptTokens);
        Assert.Equal([7], session.Calls[^1]);
    }

    private static GenerationResult CollectResult(TextGenerator generator, int[] prompt)
    {
        foreach (string _ in generator.Generate(prompt, new GenerationOptions { MaxNewTokens = 100, Sampling = new SamplingOptions { Temperature = 0f } }))
        {
        }
        return generator.LastResult!;
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(int.MaxValue)]
    [InlineData(int.MinValue)]
    public void ThreadsOutsideAUsableRangeAreAnArgumentError(int threads)
    {
        // SessionOptions.Threads is user input (a config value, a command-line flag). Out of range it must be
        // ArgumentOutOfRangeException naming Threads, not OutOfMemoryException from sizing per-thread buffers.
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => model.CreateSession(new SessionOptions { Threads = threads }));
        Assert.Contains("Threads", e.Message, StringComparison.OrdinalIgnoreCase);
    }
}
