using System;

namespace Llama.Compiled;

/// <summary>One session's share of a <see cref="LlamaBatch.Forward"/> call: the tokens to evaluate at its position.</summary>
/// <param name="Session">A session of the batch's model; at most once per call.</param>
/// <param name="Tokens">At least one token id.</param>
public readonly record struct BatchItem(ILlamaSession Session, ReadOnlyMemory<int> Tokens);

/// <summary>How a <see cref="LlamaBatch"/> runs.</summary>
public sealed record BatchOptions
{
    /// <summary>Threads that evaluate a forward pass, the caller's included (default: the processor count, at most 8).</summary>
    public int Threads { get; init; } = Math.Min(Environment.ProcessorCount, 8);

    /// <summary>
    /// Most tokens one forward pass evaluates, over all sessions (default 64): the rows of its activation buffers. A call
    /// with more tokens runs several passes.
    /// </summary>
    public int MaxTokens { get; init; } = 64;
}

/// <summary>
/// Evaluates several sessions together: each session's tokens at its own position, with its own KV cache, in one forward
/// pass, so each weight matrix is read once for all of them. What each session ends with — position, KV cache, logits —
/// is what <see cref="ILlamaSession.Forward(ReadOnlySpan{int})"/> of its tokens would give it. Create one with
/// <see cref="ILlamaModel.CreateBatch"/>. Not thread-safe: one <see cref="Forward"/> at a time.
/// </summary>
public sealed class LlamaBatch : IDisposable
{
    private readonly ILlamaModel _model;
    private bool _disposed;

    internal LlamaBatch(ILlamaModel model, BatchOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxTokens, 1, nameof(options));
        _model = model;
        Options = options;
    }

    /// <summary>The options the batch was created with.</summary>
    public BatchOptions Options { get; }

    /// <summary>
    /// Evaluates every item's tokens at its session's <see cref="ILlamaSession.Position"/>; afterwards each session's
    /// <see cref="ILlamaSession.Logits"/> are those of its last token.
    /// </summary>
    /// <exception cref="ArgumentException">An item has no tokens, a session of another model, or a session listed twice.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token id is not in [0, VocabSize); nothing is evaluated.</exception>
    /// <exception cref="InvalidOperationException">An item's tokens do not fit in its session's remaining context (and the session does not shift).</exception>
    public void Forward(ReadOnlySpan<BatchItem> items)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        for (int i = 0; i < items.Length; i++)
        {
            ILlamaSession session = items[i].Session ?? throw new ArgumentException($"Item {i} has no session.", nameof(items));
            if (!ReferenceEquals(session.Model, _model))
                throw new ArgumentException($"Item {i}'s session belongs to another model.", nameof(items));
            if (items[i].Tokens.IsEmpty)
                throw new ArgumentException($"Item {i} has no tokens.", nameof(items));
            for (int j = 0; j < i; j++)
            {
                if (ReferenceEquals(items[j].Session, session))
                    throw new ArgumentException($"Items {j} and {i} have the same session.", nameof(items));
            }
        }
        foreach (BatchItem item in items)
            item.Session.Forward(item.Tokens.Span);
    }

    /// <summary>Releases the batch's buffers and threads (not the sessions).</summary>
    public void Dispose() => _disposed = true;
}
