using System;

namespace Llama.Compiled;

/// <summary>The text of one generation with its counts and timings.</summary>
/// <param name="Text">The generated text: every chunk that was streamed, concatenated (stop sequences excluded).</param>
/// <param name="Stats">Counts, timings and why generation ended.</param>
public sealed record GenerationResult(string Text, GenerationStats Stats)
{
    /// <summary>Why generation ended.</summary>
    public StopReason FinishReason => Stats.StopReason;

    /// <summary>Tokens of the prompt, BOS included.</summary>
    public int PromptTokens => Stats.PromptTokens;

    /// <summary>Tokens generated (the end-of-sequence token not counted).</summary>
    public int GeneratedTokens => Stats.GeneratedTokens;

    /// <summary>Time to the first token (prefill and first draw).</summary>
    public TimeSpan PrefillTime => Stats.PrefillTime;

    /// <summary>Time spent generating after the first token.</summary>
    public TimeSpan DecodeTime => Stats.DecodeTime;
}
