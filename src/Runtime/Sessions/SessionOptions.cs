using System;

namespace Llama.Compiled;

/// <summary>How a session runs.</summary>
public sealed record SessionOptions
{
    /// <summary>
    /// Threads that evaluate a forward pass, the caller's included (default: the processor count, at
    /// most 8). Kernels too small to gain from threads run on the calling thread regardless.
    /// </summary>
    public int Threads { get; init; } = Math.Min(Environment.ProcessorCount, 8);

    /// <summary>What Forward does when the tokens do not fit in the remaining context (default: throw).</summary>
    public ContextOverflow Overflow { get; init; } = ContextOverflow.Throw;

    /// <summary>Positions at the start (e.g. a BOS token or a system prompt) that a context shift never drops.</summary>
    public int KeepTokens { get; init; }
}

/// <summary>What a session does when the tokens given to Forward do not fit in the remaining context.</summary>
public enum ContextOverflow
{
    /// <summary>Throw <see cref="InvalidOperationException"/>: nothing is evaluated and the cache is unchanged.</summary>
    Throw = 0,

    /// <summary>
    /// Shift the window as llama.cpp's context shift does: keep the first
    /// <see cref="SessionOptions.KeepTokens"/> positions, drop the oldest half of the rest, and
    /// re-rotate the remaining keys to their new positions.
    /// </summary>
    Shift = 1,
}
