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
}
