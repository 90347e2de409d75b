using System;

namespace Llama.Compiled;

/// <summary>
/// A loaded, compiled LLaMA-family model. Generated model classes implement it so that text
/// generation, sampling and tools can work with any compiled model. The weights are shared
/// read-only by every session the model creates.
/// </summary>
public interface ILlamaModel : IDisposable
{
    /// <summary>The shape the model was compiled for.</summary>
    LlamaModelShape Shape { get; }

    /// <summary>Creates a session that owns one KV cache of <see cref="LlamaModelShape.MaxContext"/> positions.</summary>
    ILlamaSession CreateSession();

    /// <summary>
    /// Creates a batch that evaluates several of this model's sessions in one forward pass (continuous batching: one
    /// sequence's prefill may share the pass with the others' decoding).
    /// </summary>
    /// <param name="options">Threads and the most tokens per pass; null for the defaults.</param>
    /// <remarks>A compiled model's batch shares each pass's weight reads; this default, for other implementations, runs the sessions one after another.</remarks>
    LlamaBatch CreateBatch(BatchOptions? options = null) => new(this, options ?? new BatchOptions());
}

/// <summary>
/// One sequence being evaluated: a KV cache and the position in it. A session is not thread-safe;
/// use one session per concurrent sequence.
/// </summary>
public interface ILlamaSession : IDisposable
{
    /// <summary>The model this session runs.</summary>
    ILlamaModel Model { get; }

    /// <summary>Number of tokens already in the KV cache; the next token is evaluated at this position.</summary>
    int Position { get; }

    /// <summary>
    /// Evaluates <paramref name="tokens"/> (batched prefill) at <see cref="Position"/> and returns the
    /// logits of the last one. The span is valid until the next call on this session.
    /// </summary>
    ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens);

    /// <summary>Evaluates one token at <see cref="Position"/> and returns its logits.</summary>
    ReadOnlySpan<float> Forward(int token);

    /// <summary>Empties the KV cache: the next token is evaluated at position 0.</summary>
    void Reset();

    /// <summary>Threads and what <see cref="Forward(ReadOnlySpan{int})"/> does when the context is full (throw or shift).</summary>
    SessionOptions Options { get; }

    /// <summary>The logits [VocabSize] of the last evaluated (or restored) token.</summary>
    ReadOnlySpan<float> Logits { get; }

    /// <summary>Writes the session's state (position, logits, KV cache) to <paramref name="stream"/>.</summary>
    void Save(System.IO.Stream stream);

    /// <summary>Replaces the session's state with one <see cref="Save"/> wrote for a model of the same shape and weights.</summary>
    /// <exception cref="System.IO.InvalidDataException">The data is not such a state; the session is then reset.</exception>
    void Restore(System.IO.Stream stream);
}
