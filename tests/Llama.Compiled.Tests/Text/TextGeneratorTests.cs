using System;
using System.Collections.Generic;
using System.Linq;
using Microsoft.ML.Tokenizers;
using Xunit;

namespace Llama.Compiled.Tests;

public class TextGeneratorTests
{
    private static readonly Tokenizer Tokenizer = ScriptedGeneration.Tokenizer;
    private static readonly GenerationOptions Greedy = ScriptedGeneration.Greedy;

    private const string Story = "Once upon a time, there was a little girl named Lily.";

    private static int[] Continuation(string prompt, string text) => ScriptedGeneration.Continuation(prompt, text);

    private static (TextGenerator Generator, FakeSession Session) Create(IReadOnlyList<int> script, int maxContext = 512) =>
        ScriptedGeneration.Create(script, maxContext);

    [Fact]
    public void StopsAtEndOfSequenceAndContinuesThePromptText()
    {
        int[] continuation = Continuation("Once upon a", Story);
        var (generator, session) = Create([.. continuation, 2, 400, 401]);

        string text = string.Concat(generator.Generate("Once upon a", Greedy));

        Assert.Equal(Story, "Once upon a" + text);
        GenerationStats stats = generator.LastStats!;
        Assert.Equal(StopReason.EndOfSequence, stats.StopReason);
        Assert.Equal(4, stats.PromptTokens);
        Assert.Equal(continuation.Length, stats.GeneratedTokens);
        Assert.True(stats.PrefillTime > TimeSpan.Zero && stats.DecodeTime > TimeSpan.Zero);
        Assert.True(stats.PrefillTokensPerSecond > 0 && stats.DecodeTokensPerSecond > 0);
        // The prompt in one batch (BOS first), then every generated token but the EOS.
        Assert.Equal([1, 403, 407, 261], session.Calls[0]);
        Assert.Equal(continuation, session.Calls.Skip(1).Select(c => Assert.Single(c)));
    }

    [Fact]
    public void StopsAtBos()
    {
        int[] continuation = Continuation("Once upon a", Story);
        var (generator, _) = Create([.. continuation[..3], 1, 400]);

        string text = string.Concat(generator.Generate("Once upon a", Greedy));

        Assert.Equal(Tokenizer.Decode([1, 403, 407, 261, .. continuation[..3]]), "Once upon a" + text);
        Assert.Equal(StopReason.EndOfSequence, generator.LastStats!.StopReason);
        Assert.Equal(3, generator.LastStats.GeneratedTokens);
    }

    [Fact]
    public void StopsAtMaxNewTokensWithoutEvaluatingTheLastToken()
    {
        int[] continuation = Continuation("Once upon a", Story);
        var (generator, session) = Create(continuation);

        string text = string.Concat(generator.Generate("Once upon a", Greedy with { MaxNewTokens = 3 }));

        Assert.Equal(Tokenizer.Decode([1, 403, 407, 261, .. continuation[..3]]), "Once upon a" + text);
        Assert.Equal(StopReason.MaxNewTokens, generator.LastStats!.StopReason);
        Assert.Equal(3, generator.LastStats.GeneratedTokens);
        Assert.Equal(3, session.Calls.Count);
    }

    [Fact]
    public void StopsWhenTheContextIsFull()
    {
        int[] continuation = Continuation("Once upon a", Story);
        var (generator, session) = Create(continuation, maxContext: 8);

        string text = string.Concat(generator.Generate("Once upon a", Greedy));

        // 4 prompt tokens + 4 evaluated generated tokens fill 8 positions; the token sampled from the
        // last logits is still output.
        Assert.Equal(StopReason.ContextFull, generator.LastStats!.StopReason);
        Assert.Equal(5, generator.LastStats.GeneratedTokens);
        Assert.Equal(8, session.Position);
        Assert.Equal(Tokenizer.Decode([1, 403, 407, 261, .. continuation[..5]]), "Once upon a" + text);
    }

    [Fact]
    public void AnEmptyPromptStartsFromBosWithoutALeadingSpace()
    {
        int[] continuation = Tokenizer.EncodeToIds(Story).Skip(1).ToArray();
        var (generator, session) = Create([.. continuation, 2]);

        string text = string.Concat(generator.Generate("", Greedy));

        Assert.Equal(Story, text);
        Assert.Equal([1], session.Calls[0]);
        Assert.Equal(1, generator.LastStats!.PromptTokens);
    }

    [Fact]
    public void ChunksComeOutAsTheyAreGenerated()
    {
        int[] continuation = Continuation("Once upon a", Story);
        var (generator, session) = Create([.. continuation, 2]);

        using IEnumerator<string> chunks = generator.Generate("Once upon a", Greedy).GetEnumerator();
        Assert.True(chunks.MoveNext());

        Assert.Equal(" time", chunks.Current);
        Assert.Single(session.Calls);
        Assert.Null(generator.LastStats);
    }

    [Fact]
    public void StoppingEarlyIsRecorded()
    {
        int[] continuation = Continuation("Once upon a", Story);
        var (generator, _) = Create([.. continuation, 2]);

        foreach (string chunk in generator.Generate("Once upon a", Greedy))
            break;

        Assert.Equal(StopReason.Abandoned, generator.LastStats!.StopReason);
        Assert.Equal(1, generator.LastStats.GeneratedTokens);
    }

    [Fact]
    public void ZeroNewTokensOnlyEvaluatesThePrompt()
    {
        var (generator, session) = Create([400]);

        Assert.Empty(generator.Generate("Once upon a", Greedy with { MaxNewTokens = 0 }));
        Assert.Equal(4, session.Position);
        Assert.Equal(StopReason.MaxNewTokens, generator.LastStats!.StopReason);
    }

    [Fact]
    public void InvalidArgumentsThrowWhenCalled()
    {
        var (generator, _) = Create([400], maxContext: 3);

        Assert.Throws<ArgumentException>("prompt", () => generator.Generate("Once upon a time"));
        Assert.Throws<ArgumentOutOfRangeException>("MaxNewTokens", () => generator.Generate("", new GenerationOptions { MaxNewTokens = -1 }));
        Assert.Throws<ArgumentOutOfRangeException>("TopP", () => generator.Generate("", new GenerationOptions { Sampling = new SamplingOptions { TopP = 2f } }));
    }

    [Fact]
    public void GeneratingAgainResetsTheSession()
    {
        int[] continuation = Continuation("Once upon a", Story);
        var (generator, _) = Create([.. continuation, 2]);

        string first = string.Concat(generator.Generate("Once upon a", Greedy));
        string second = string.Concat(generator.Generate("Once upon a", Greedy));

        Assert.Equal(first, second);
    }
}
