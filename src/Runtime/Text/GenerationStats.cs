using System;

namespace Llama.Compiled;

/// <summary>Why generation ended.</summary>
public enum StopReason
{
    /// <summary>
    /// The model produced an end-of-sequence token (or BOS, which starts a new text), or one of
    /// <see cref="GenerationOptions.StopTokenIds"/>.
    /// </summary>
    EndOfSequence,

    /// <summary><see cref="GenerationOptions.MaxNewTokens"/> tokens were generated.</summary>
    MaxNewTokens,

    /// <summary>The session's KV cache is full (<see cref="LlamaModelShape.MaxContext"/> positions).</summary>
    ContextFull,

    /// <summary>The caller stopped enumerating the text before generation ended.</summary>
    Abandoned,

    /// <summary>The output contained one of <see cref="GenerationOptions.StopSequences"/>.</summary>
    StopSequence,

    /// <summary>The cancellation token was cancelled; generation stopped between two tokens.</summary>
    Cancelled,
}

/// <summary>Counts and timings of one generation.</summary>
/// <param name="PromptTokens">Tokens of the prompt, BOS included (also those already in the session's KV cache, see <see cref="ReusedPromptTokens"/>).</param>
/// <param name="GeneratedTokens">Tokens generated (the end-of-sequence token not counted).</param>
/// <param name="PrefillTime">Time to the first token: the batched forward pass over the prompt and the first draw.</param>
/// <param name="DecodeTime">Time spent generating after the prefill (forward passes, sampling, detokenizing), not counting the caller's time between chunks.</param>
/// <param name="StopReason">Why generation ended.</param>
/// <param name="Seed">The sampler's seed: passing it in <see cref="SamplingOptions.Seed"/> repeats the generation.</param>
public sealed record GenerationStats(
    int PromptTokens,
    int GeneratedTokens,
    TimeSpan PrefillTime,
    TimeSpan DecodeTime,
    StopReason StopReason,
    ulong Seed)
{
    /// <summary>
    /// Prompt tokens that were already in the session's KV cache from the previous generation and
    /// were not evaluated again (see <see cref="TextGenerator.ReuseSessionPrefix"/>); 0 otherwise.
    /// </summary>
    public int ReusedPromptTokens { get; init; }

    /// <summary>Time the generation waited for a free sequence before its prefill (<see cref="BatchedGenerator"/>); 0 otherwise.</summary>
    public TimeSpan QueueTime { get; init; }

    /// <summary>Prompt tokens evaluated in the prefill: <see cref="PromptTokens"/> less <see cref="ReusedPromptTokens"/>.</summary>
    public int PrefilledTokens => PromptTokens - ReusedPromptTokens;

    /// <summary>Prefilled tokens per second of prefill (0 when nothing was measured).</summary>
    public double PrefillTokensPerSecond => PerSecond(PrefilledTokens, PrefillTime);

    /// <summary>Generated tokens per second of decode time (0 when nothing was measured).</summary>
    public double DecodeTokensPerSecond => PerSecond(GeneratedTokens, DecodeTime);

    private static double PerSecond(int tokens, TimeSpan time) =>
        time > TimeSpan.Zero ? tokens / time.TotalSeconds : 0;
}
