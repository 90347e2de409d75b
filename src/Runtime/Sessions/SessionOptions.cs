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

    /// <summary>
    /// How the session's KV cache stores keys and values (default: <see cref="KvCacheFormat.F32"/>, exact). F16 halves the
    /// cache's memory and what attention reads per token, Q8_0 quarters it, each at a small cost in accuracy.
    /// </summary>
    public KvCacheFormat KvCache { get; init; } = KvCacheFormat.F32;
}

/// <summary>The element format of a session's KV cache, as llama.cpp's cache types (its <c>--cache-type-k/-v</c>).</summary>
public enum KvCacheFormat
{
    /// <summary>32-bit floats: what the projections compute, exactly. 4 bytes per value.</summary>
    F32 = 0,

    /// <summary>IEEE half precision, rounded to nearest (a relative error of at most 2^-11 per value). 2 bytes per value.</summary>
    F16 = 1,

    /// <summary>
    /// llama.cpp's q8_0: blocks of 32 values along a head (a narrower head is one block) as 8-bit integers times one F16 scale,
    /// max|x| / 127 of the block (an error of at most half that scale per value). About 1.1 bytes per value.
    /// </summary>
    Q8_0 = 2,
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
