using System;
using System.Threading;
using Llama.Compiled.CompilerServices;

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
/// is what <see cref="ILlamaSession.Forward(ReadOnlySpan{int})"/> of its tokens would give it (the logits to float
/// rounding: a matrix kernel may group a token's row with other rows than when the session runs alone). Create one with
/// <see cref="ILlamaModel.CreateBatch"/>. Not thread-safe: one <see cref="Forward"/> at a time.
/// </summary>
/// <remarks>
/// Continuous batching: one session's prefill may share a pass with the others' single decode tokens. The tokens are laid
/// out item after item in passes of at most <see cref="BatchOptions.MaxTokens"/> rows; a session's tokens that do not fit
/// in one pass continue in the next. Only each item's last token gets logits, and the classifier reads its weights once
/// for all of them. The batch owns its threads and its pass's buffers; a session used only through batches never creates
/// its own.
/// </remarks>
public sealed class LlamaBatch : IDisposable
{
    private readonly ILlamaModel _model;
    private readonly Compiled? _compiled; // the shared forward pass, for a compiled model
    private int _busy;
    private bool _disposed;

    internal LlamaBatch(ILlamaModel model, BatchOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxTokens, 1, nameof(options));
        if (options.Threads < 1 || options.Threads > WorkerPool.MaxThreads)
            throw new ArgumentOutOfRangeException(nameof(options), options.Threads, $"Threads must be in [1, {WorkerPool.MaxThreads}].");
        _model = model;
        Options = options;
        if (model is LlamaModel compiled)
            _compiled = new Compiled(compiled, options);
    }

    /// <summary>The options the batch was created with.</summary>
    public BatchOptions Options { get; }

    /// <summary>
    /// Evaluates every item's tokens at its session's <see cref="ILlamaSession.Position"/>; afterwards each session's
    /// <see cref="ILlamaSession.Logits"/> are those of its last token. Every item is checked before anything is evaluated:
    /// when the call throws one of the exceptions below, no session has changed.
    /// </summary>
    /// <exception cref="ArgumentException">An item has no tokens, a session of another model, or a session listed twice.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token id is not in [0, VocabSize).</exception>
    /// <exception cref="InvalidOperationException">
    /// An item's tokens do not fit in its session's remaining context (and the session does not shift), a session is in use
    /// on another thread, or another thread is running this batch.
    /// </exception>
    /// <exception cref="ObjectDisposedException">The batch, a session or the model is disposed.</exception>
    public void Forward(ReadOnlySpan<BatchItem> items)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        for (int i = 0; i < items.Length; i++)
        {
            ILlamaSession session = items[i].Session ?? throw new ArgumentException($"Item {i} has no session.", nameof(items));
            if (!ReferenceEquals(session.Model, _model))
                throw new ArgumentException($"Item {i}'s session belongs to another model.", nameof(items));
            if (_compiled is not null && session is not LlamaSession)
                throw new ArgumentException($"Item {i}'s session is not a session the model created.", nameof(items));
            if (items[i].Tokens.IsEmpty)
                throw new ArgumentException($"Item {i} has no tokens.", nameof(items));
            for (int j = 0; j < i; j++)
            {
                if (ReferenceEquals(items[j].Session, session))
                    throw new ArgumentException($"Items {j} and {i} have the same session.", nameof(items));
            }
        }
        if (Interlocked.Exchange(ref _busy, 1) != 0)
            throw new InvalidOperationException("The batch is already evaluating on another thread; a batch is not thread-safe.");
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_compiled is not null)
            {
                _compiled.Forward(items);
                return;
            }
            // Another implementation of ILlamaModel: the sessions one after another, all checked first.
            LlamaModelShape shape = _model.Shape;
            for (int i = 0; i < items.Length; i++)
            {
                ILlamaSession session = items[i].Session;
                foreach (int token in items[i].Tokens.Span)
                {
                    if ((uint)token >= (uint)shape.VocabSize)
                        throw new ArgumentOutOfRangeException(nameof(items), token, $"Item {i}: Token ids must be in [0, {shape.VocabSize}).");
                }
                int length = items[i].Tokens.Length;
                if (length > shape.MaxContext - session.Position
                    && (session.Options.Overflow != ContextOverflow.Shift || length > shape.MaxContext - session.Options.KeepTokens))
                    throw new InvalidOperationException($"Item {i}: The session is full: position {session.Position} + {length} tokens exceeds MaxContext ({shape.MaxContext}).");
            }
            foreach (BatchItem item in items)
                item.Session.Forward(item.Tokens.Span);
        }
        finally
        {
            Volatile.Write(ref _busy, 0);
        }
    }

    /// <summary>Releases the batch's buffers and threads (not the sessions).</summary>
    /// <exception cref="InvalidOperationException">Forward runs on another thread.</exception>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _busy, 1) != 0)
            throw new InvalidOperationException("The batch is evaluating on another thread; dispose it after Forward returns.");
        if (!_disposed)
        {
            _disposed = true;
            _compiled?.Dispose();
        }
        Volatile.Write(ref _busy, 0);
    }

    /// <summary>A compiled model's batch: its threads, one forward pass of MaxTokens rows, and what a call lays out.</summary>
    private sealed class Compiled : IDisposable
    {
        private readonly LlamaModel _model;
        private readonly WorkerPool _pool;
        private readonly ForwardPass _pass;
        private readonly PassRows _rows;
        private readonly int[] _segmentItems;   // [MaxTokens] per item with rows in the current pass: its index,
        private readonly int[] _segmentEnds;    // [MaxTokens] and how many of its tokens are evaluated once the pass ran
        private readonly int[] _outputItems;    // [MaxTokens] the item of each output row of the current pass
        private LlamaSession[] _sessions = [];  // [items] of the current call
        private int[] _starts = [];             // [items] the positions a shift drops, then each session's position where its tokens begin
        private float[] _logits = [];           // [outputs, VocabSize], grown to the most outputs a pass has had

        public Compiled(LlamaModel model, BatchOptions options)
        {
            _model = model;
            _pool = new WorkerPool(options.Threads);
            try
            {
                _pass = model.NewPass(_pool, options.MaxTokens);
            }
            catch
            {
                _pool.Dispose();
                throw;
            }
            _rows = new PassRows(options.MaxTokens);
            _segmentItems = new int[options.MaxTokens];
            _segmentEnds = new int[options.MaxTokens];
            _outputItems = new int[options.MaxTokens];
        }

        public void Forward(ReadOnlySpan<BatchItem> items)
        {
            if (_sessions.Length < items.Length)
            {
                _sessions = new LlamaSession[items.Length];
                _starts = new int[items.Length];
            }
            int entered = 0;
            try
            {
                // Every session is taken (as its own Forward takes it) and checked before any is changed.
                for (; entered < items.Length; entered++)
                {
                    var session = (LlamaSession)items[entered].Session;
                    session.EnterBusy($"Item {entered}'s session is evaluating on another thread; a session is not thread-safe.");
                    _sessions[entered] = session;
                }
                for (int i = 0; i < items.Length; i++)
                    _sessions[i].ThrowIfDisposed();
                for (int i = 0; i < items.Length; i++)
                    _starts[i] = _sessions[i].CheckForward(items[i].Tokens.Span, nameof(items), $"Item {i}: ");
                _model.Enter();
                try
                {
                    for (int i = 0; i < items.Length; i++)
                    {
                        if (_starts[i] > 0)
                            _sessions[i].ShiftContext(_starts[i]);
                        _starts[i] = _sessions[i].Position;
                    }
                    Evaluate(items);
                }
                finally
                {
                    _model.Exit();
                }
            }
            finally
            {
                for (int i = 0; i < entered; i++)
                {
                    _sessions[i].ExitBusy();
                    _sessions[i] = null!;
                }
            }
        }

        /// <summary>Lays the items' tokens out in passes of at most MaxTokens rows, item after item, and runs them.</summary>
        private void Evaluate(ReadOnlySpan<BatchItem> items)
        {
            int vocabSize = _model.Shape.VocabSize;
            int item = 0, offset = 0; // the next token to lay out: items[item].Tokens[offset]
            while (item < items.Length)
            {
                _rows.Clear();
                int segments = 0, outputs = 0;
                while (item < items.Length && _rows.Count < _rows.Capacity)
                {
                    ReadOnlySpan<int> tokens = items[item].Tokens.Span;
                    LlamaSession session = _sessions[item];
                    int take = Math.Min(_rows.Capacity - _rows.Count, tokens.Length - offset);
                    for (int j = offset; j < offset + take; j++)
                        _rows.Add(tokens[j], session.Cache, _starts[item] + j, output: j == tokens.Length - 1);
                    _segmentItems[segments] = item;
                    _segmentEnds[segments++] = offset + take;
                    offset += take;
                    if (offset == tokens.Length)
                    {
                        _outputItems[outputs++] = item;
                        item++;
                        offset = 0;
                    }
                }
                float[]? logits = null;
                if (outputs > 0)
                {
                    if (_logits.Length < outputs * vocabSize)
                        _logits = new float[outputs * vocabSize];
                    logits = _logits;
                }
                _pass.Evaluate(_rows, logits);
                for (int s = 0; s < segments; s++)
                    _sessions[_segmentItems[s]].Advance(_starts[_segmentItems[s]] + _segmentEnds[s]);
                for (int o = 0; o < outputs; o++)
                    _logits.AsSpan(o * vocabSize, vocabSize).CopyTo(_sessions[_outputItems[o]].LogitsBuffer);
            }
        }

        public void Dispose() => _pool.Dispose();
    }
}
