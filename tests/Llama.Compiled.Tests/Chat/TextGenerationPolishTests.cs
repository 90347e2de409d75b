using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.ML.Tokenizers;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>Streaming, stop sequences, results, cancellation and session reuse of <see cref="TextGenerator"/>.</summary>
public class TextGenerationPolishTests
{
    private static readonly Tokenizer Tokenizer = ScriptedGeneration.Tokenizer;
    private static readonly GenerationOptions Greedy = ScriptedGeneration.Greedy;

    private const string Story = "Once upon a time, there was a little girl named Lily. She loved to play outside.";

    private static int[] Continuation(string prompt, string text) => ScriptedGeneration.Continuation(prompt, text);

    private static (TextGenerator Generator, FakeSession Session) Create(IReadOnlyList<int> script, int maxContext = 512) =>
        ScriptedGeneration.Create(script, maxContext);

    [Fact]
    public async Task StreamsAsynchronouslyWhatTheSynchronousMethodStreams()
    {
        int[] continuation = Continuation("Once upon a", Story);
        var (generator, _) = Create([.. continuation, 2]);

        List<string> sync = generator.Generate("Once upon a", Greedy).ToList();
        var chunks = new List<string>();
        await foreach (string chunk in generator.GenerateAsync("Once upon a", Greedy))
            chunks.Add(chunk);

        Assert.Equal(sync, chunks);
        Assert.Equal(Story, "Once upon a" + string.Concat(chunks));
        GenerationResult result = generator.LastResult!;
        Assert.Equal(string.Concat(chunks), result.Text);
        Assert.Equal(StopReason.EndOfSequence, result.FinishReason);
        Assert.Equal(4, result.PromptTokens);
        Assert.Equal(continuation.Length, result.GeneratedTokens);
        Assert.True(result.PrefillTime > TimeSpan.Zero && result.DecodeTime > TimeSpan.Zero);
    }

    [Fact]
    public void GenerateTextReturnsTheResult()
    {
        int[] continuation = Continuation("Once upon a", Story);
        var (generator, _) = Create([.. continuation, 2]);

        GenerationResult result = generator.GenerateText("Once upon a", Greedy);

        Assert.Equal(Story, "Once upon a" + result.Text);
        Assert.Same(generator.LastStats, result.Stats);
    }

    [Fact]
    public void AStopSequenceEndsTheTextAndIsNotOutput()
    {
        int[] continuation = Continuation("Once upon a", Story);
        var (generator, session) = Create([.. continuation, 2]);

        List<string> chunks = generator.Generate("Once upon a", Greedy with { StopSequences = ["little girl", "zebra"] }).ToList();

        Assert.Equal(" time, there was a ", string.Concat(chunks));
        Assert.Equal(StopReason.StopSequence, generator.LastStats!.StopReason);
        // Held back: no chunk ever contained the start of the stop sequence.
        Assert.DoesNotContain(chunks, c => c.Contains("lit", StringComparison.Ordinal));
        // The token that completed "little girl" was generated but not evaluated.
        int girl = Continuation("Once upon a", "Once upon a time, there was a little girl").Length;
        Assert.Equal(girl, generator.LastStats.GeneratedTokens);
        Assert.Equal(girl, session.Calls.Count);
    }

    [Fact]
    public void TextThatOnlyLooksLikeAStopSequenceIsReleased()
    {
        int[] continuation = Continuation("Once upon a", Story);
        var (generator, _) = Create([.. continuation, 2]);

        // "little bird" shares "little " with the text: held back, then released when "girl" follows.
        string text = string.Concat(generator.Generate("Once upon a", Greedy with { StopSequences = ["little bird", "outside!"] }));

        Assert.Equal(Story[11..], text);
        Assert.Equal(StopReason.EndOfSequence, generator.LastStats!.StopReason);
    }

    [Fact]
    public void StopTokenIdsEndLikeEndOfSequence()
    {
        int[] continuation = Continuation("Once upon a", Story);
        var (generator, _) = Create([.. continuation[..4], 300, .. continuation[4..]]);

        string text = string.Concat(generator.Generate("Once upon a", Greedy with { StopTokenIds = [300] }));

        Assert.Equal(Tokenizer.Decode([1, 403, 407, 261, .. continuation[..4]]), "Once upon a" + text);
        Assert.Equal(StopReason.EndOfSequence, generator.LastStats!.StopReason);
        Assert.Equal(4, generator.LastStats.GeneratedTokens);
    }

    [Fact]
    public async Task CancellationStopsBetweenTokens()
    {
        int[] continuation = Continuation("Once upon a", Story);
        var (generator, session) = Create([.. continuation, 2]);
        using var cancellation = new CancellationTokenSource();

        var chunks = new List<string>();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (string chunk in generator.GenerateAsync("Once upon a", Greedy, cancellation.Token))
            {
                chunks.Add(chunk);
                if (chunks.Count == 2)
                    cancellation.Cancel();
            }
        });

        Assert.Equal(2, chunks.Count);
        Assert.Equal(StopReason.Cancelled, generator.LastStats!.StopReason);
        Assert.Equal(2, generator.LastStats.GeneratedTokens);
        // The prompt and the first token were evaluated, nothing after the cancellation.
        Assert.Equal(2, session.Calls.Count);
        Assert.Equal(string.Concat(chunks), generator.LastResult!.Text);
    }

    [Fact]
    public async Task WithCancellationIsHonouredToo()
    {
        var (generator, _) = Create([.. Continuation("Once upon a", Story), 2]);
        using var cancellation = new CancellationTokenSource();
        cancellation.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (string _ in generator.GenerateAsync("Once upon a", Greedy).WithCancellation(cancellation.Token))
            {
            }
        });
        Assert.Equal(StopReason.Cancelled, generator.LastStats!.StopReason);
    }

    [Fact]
    public void AReusedPrefixIsNotEvaluatedAgain()
    {
        int[] continuation = Continuation("Once upon a", Story);
        // Turn 1: the prompt, then 3 tokens; turn 2: the new prompt's suffix, then EOS.
        var (generator, session) = Create([continuation[0], continuation[1], continuation[2], 400, 2]);
        generator.ReuseSessionPrefix = true;

        string first = string.Concat(generator.Generate("Once upon a", Greedy with { MaxNewTokens = 3 }));
        Assert.Equal(Tokenizer.Decode([1, 403, 407, 261, .. continuation[..3]]), "Once upon a" + first);
        // In the cache: the prompt and the two generated tokens that were evaluated.
        int[] cached = [1, 403, 407, 261, continuation[0], continuation[1]];
        Assert.Equal(cached, generator.SessionTokens);

        int[] next = [.. cached, continuation[2], 500, 501];
        session.Calls.Clear();
        string second = string.Concat(generator.Generate(next, Greedy));

        // Only the new ids in one batch, then the generated token.
        Assert.Equal([[continuation[2], 500, 501], [400]], session.Calls);
        Assert.Equal(6, generator.LastStats!.ReusedPromptTokens);
        Assert.Equal(3, generator.LastStats.PrefilledTokens);
        Assert.Equal(9, generator.LastStats.PromptTokens);
        Assert.Equal([.. next, 400], generator.SessionTokens);
        Assert.Equal(Tokenizer.Decode([1, 400]), second.Trim());
    }

    [Fact]
    public void ADifferentPrefixResetsTheSession()
    {
        int[] continuation = Continuation("Once upon a", Story);
        var (generator, session) = Create([continuation[0], continuation[1], 2]);
        generator.ReuseSessionPrefix = true;

        string first = string.Concat(generator.Generate("Once upon a", Greedy));
        string second = string.Concat(generator.Generate("Once upon a", Greedy));

        // The same prompt again: the cache holds more than the prompt, so it cannot be a prefix.
        Assert.Equal(0, generator.LastStats!.ReusedPromptTokens);
        Assert.Equal([1, 403, 407, 261], session.Calls[0]);
        Assert.Equal(" time,", first);
        Assert.Equal(first, second);
    }

    [Fact]
    public void PromptIdsAreChecked()
    {
        var (generator, _) = Create([400], maxContext: 3);

        Assert.Throws<ArgumentException>("promptIds", () => generator.Generate(Array.Empty<int>()));
        Assert.Throws<ArgumentException>("promptIds", () => generator.Generate([1, 512]));
        Assert.Throws<ArgumentException>("prompt", () => generator.Generate([1, 2, 3, 4]));
    }
}
