using System;
using System.IO;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;
using Llama.Compiled.CompilerServices;

namespace Llama.Compiled;

/// <summary>
/// One sequence being evaluated: its KV cache, its position and its last logits. Holds everything a session does
/// that does not depend on the model's shape — the busy guard, disposal, token and overflow checks, prefill
/// chunking, context shift, saved state — as Regex's RegexRunner does for generated regexes; the model's generated
/// <see cref="ForwardPass"/> evaluates the tokens. A session is not thread-safe: calling it from two threads at once
/// throws <see cref="InvalidOperationException"/>. Its threads and activation buffers are created at its first own
/// <see cref="Forward(ReadOnlySpan{int})"/>: a session evaluated only through a <see cref="LlamaBatch"/> holds its KV cache alone.
/// </summary>
public abstract class LlamaSession : ILlamaSession
{
    private const int StateMagic = 0x4B434C4C; // "LLCK"
    private const int StateVersion = 2;        // 2: the weights' fingerprint and the cache's element type

    private readonly LlamaModel _model;
    private readonly float[] _logits; // [VocabSize] of the last evaluated (or restored) token
    private readonly ulong _weightsFingerprint; // of the model's weights, for saved states (read while the model is alive)
    private WorkerPool? _pool;        // the session's own threads, from its first own Forward
    private ForwardPass? _pass;       // PrefillChunk rows, from its first own Forward
    private PassRows? _rows;          // the rows of _pass
    private int _position;
    private int _busy;                // 1 while a call runs, to detect concurrent use
    private bool _disposed;

    /// <summary>Checks <paramref name="options"/> and allocates the cache and the logits.</summary>
    /// <param name="model">The model the session runs.</param>
    /// <param name="options">Threads and overflow policy.</param>
    /// <exception cref="ArgumentOutOfRangeException">Threads, KeepTokens or KvCache are out of range.</exception>
    protected LlamaSession(LlamaModel model, SessionOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        LlamaModelShape shape = model.Shape;
        if (options.Threads < 1 || options.Threads > WorkerPool.MaxThreads)
            throw new ArgumentOutOfRangeException(nameof(options), options.Threads, $"Threads must be in [1, {WorkerPool.MaxThreads}].");
        if (options.KeepTokens < 0 || options.KeepTokens >= shape.MaxContext)
            throw new ArgumentOutOfRangeException(nameof(options), options.KeepTokens, $"KeepTokens must be in [0, MaxContext = {shape.MaxContext}).");
        if (!Enum.IsDefined(options.KvCache))
            throw new ArgumentOutOfRangeException(nameof(options), options.KvCache, "KvCache is not a KvCacheFormat.");
        _model = model;
        Options = options;
        _weightsFingerprint = model.WeightsFingerprint;
        Cache = new KvCache(shape.LayerCount, shape.KvHeadCount, shape.HeadDim, shape.MaxContext, options.KvCache);
        _logits = new float[shape.VocabSize];
    }

    /// <inheritdoc/>
    public ILlamaModel Model => _model;

    /// <summary>The options the session was created with.</summary>
    public SessionOptions Options { get; }

    /// <summary>Tokens in the KV cache; the next token is evaluated at this position.</summary>
    public int Position => _position;

    /// <summary>The logits [VocabSize] of the last evaluated (or restored) token.</summary>
    public ReadOnlySpan<float> Logits => _logits;

    /// <summary>The keys and values of the positions evaluated so far.</summary>
    internal KvCache Cache { get; }

    /// <summary>Bytes of the session's KV cache, allocated for MaxContext positions in <see cref="SessionOptions.KvCache"/>'s format.</summary>
    public long KvCacheBytes => Cache.Bytes;

    /// <summary>
    /// Re-rotates keys that a context shift moved <paramref name="distance"/> positions down the cache
    /// ([count, HeadDim] of one head). The default rotates them back with the model's RoPE table.
    /// </summary>
    protected virtual void RotateShiftedKeys(Span<float> keys, int distance) => _model.Rope.RotateBack(keys, distance);

    /// <summary>
    /// Evaluates <paramref name="tokens"/> at <see cref="Position"/> in batches of the compiled PrefillChunk and returns the logits of
    /// the last one [VocabSize], valid until the next call.
    /// </summary>
    /// <exception cref="ArgumentException">No tokens.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token id is not in [0, VocabSize); nothing is evaluated.</exception>
    /// <exception cref="InvalidOperationException">The tokens do not fit in the remaining context (and the session does not shift), or another thread is using the session.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens) => Evaluate(tokens);

    /// <summary>Evaluates one token at <see cref="Position"/> and returns its logits [VocabSize].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public ReadOnlySpan<float> Forward(int token) => Evaluate(new ReadOnlySpan<int>(in token));

    // The forward pass, like every kernel, is compiled fully optimized at its first call: with tiered compilation a
    // prefill would run tier-0 code for the first conversations of an app.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private ReadOnlySpan<float> Evaluate(scoped ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty)
            throw new ArgumentException("At least one token is needed.", nameof(tokens));
        EnterBusy();
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            int discard = CheckForward(tokens, nameof(tokens), "");
            _model.Enter();
            try
            {
                if (discard > 0)
                    ShiftContext(discard);
                (ForwardPass pass, PassRows rows) = OwnPass();
                int chunkSize = pass.Rows;
                for (int start = 0; start < tokens.Length; start += chunkSize)
                {
                    ReadOnlySpan<int> chunk = tokens.Slice(start, Math.Min(chunkSize, tokens.Length - start));
                    bool last = start + chunk.Length == tokens.Length;
                    rows.Clear();
                    for (int i = 0; i < chunk.Length; i++)
                        rows.Add(chunk[i], Cache, _position + i, output: last && i == chunk.Length - 1);
                    // Only the last token's logits are computed.
                    pass.Evaluate(rows, last ? _logits : null);
                    _position += chunk.Length;
                }
            }
            finally
            {
                _model.Exit();
            }
            return _logits;
        }
        finally
        {
            ExitBusy();
        }
    }

    /// <summary>The session's own threads and pass of PrefillChunk rows, created at the first call that needs them.</summary>
    private (ForwardPass Pass, PassRows Rows) OwnPass()
    {
        if (_pass is null)
        {
            var pool = new WorkerPool(Options.Threads);
            try
            {
                _pass = _model.NewPass(pool, _model.SessionPassRows);
            }
            catch
            {
                pool.Dispose();
                throw;
            }
            _pool = pool;
            _rows = new PassRows(_model.SessionPassRows);
        }
        return (_pass, _rows!);
    }

    /// <summary>
    /// Checks that <paramref name="tokens"/> are ids of the vocabulary and fit in the context, shifted if the session shifts,
    /// and returns how many positions a shift must drop first (0 when they fit as they are). Changes nothing.
    /// </summary>
    /// <param name="tokens">At least one token.</param>
    /// <param name="paramName">The argument named by the exceptions.</param>
    /// <param name="subject">Prefixed to the messages ("Item 2: ") when the call is not the session's own.</param>
    /// <exception cref="ArgumentOutOfRangeException">A token id is not in [0, VocabSize).</exception>
    /// <exception cref="InvalidOperationException">The tokens do not fit (and the session does not shift).</exception>
    internal int CheckForward(ReadOnlySpan<int> tokens, string paramName, string subject)
    {
        LlamaModelShape shape = _model.Shape;
        int vocabSize = shape.VocabSize, maxContext = shape.MaxContext;
        foreach (int token in tokens)
        {
            if ((uint)token >= (uint)vocabSize)
                throw new ArgumentOutOfRangeException(paramName, token, $"{subject}Token ids must be in [0, {vocabSize}).");
        }
        if (tokens.Length <= maxContext - _position)
            return 0;
        if (Options.Overflow != ContextOverflow.Shift || tokens.Length > maxContext - Options.KeepTokens)
            throw new InvalidOperationException($"{subject}The session is full: position {_position} + {tokens.Length} tokens exceeds MaxContext ({maxContext}). Call Reset(), use a new session, or create the session with Overflow = ContextOverflow.Shift.");
        // As llama.cpp does: drop half of what is not kept, or more if the tokens need it.
        return Math.Max((_position - Options.KeepTokens) / 2, tokens.Length - (maxContext - _position));
    }

    /// <summary>
    /// Drops cache positions [KeepTokens, KeepTokens + <paramref name="discard"/>) and moves the later ones down, as
    /// llama.cpp's context shift does; the moved keys are re-rotated by −discard positions, values only move.
    /// </summary>
    internal void ShiftContext(int discard)
    {
        int keep = Options.KeepTokens, moved = _position - keep - discard;
        Cache.Shift(keep, discard, _position);
        // An F32 cache hands out its own rows; F16 and Q8_0 keys are widened, rotated and stored again (rounded
        // once more, as llama.cpp's K-shift of a quantized cache does).
        float[]? widened = Cache.Format == KvCacheFormat.F32 ? null : new float[moved * Cache.HeadDim];
        for (int layer = 0; layer < Cache.LayerCount; layer++)
        {
            for (int head = 0; head < Cache.KvHeadCount; head++)
            {
                if (widened is null)
                {
                    RotateShiftedKeys(Cache.KeyRows(layer, head, keep, moved), discard);
                    continue;
                }
                Cache.KeyTile(layer, head, keep, moved, widened);
                RotateShiftedKeys(widened, discard);
                Cache.WriteKeys(layer, head, keep, widened);
            }
        }
        _position -= discard;
    }

    /// <summary>Sets the position after a <see cref="LlamaBatch"/> pass appended this session's rows to <see cref="Cache"/>.</summary>
    internal void Advance(int position) => _position = position;

    /// <summary>Where a <see cref="LlamaBatch"/> puts this session's last logits: [VocabSize].</summary>
    internal Span<float> LogitsBuffer => _logits;

    /// <summary>
    /// Evaluates <paramref name="tokens"/> from position 0 (the cache is overwritten) and adds each token's final hidden
    /// state after the final RMSNorm to <paramref name="sum"/> [HiddenSize]; <paramref name="cancellationToken"/> is
    /// checked before each chunk. No logits are computed.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A token id is not in [0, VocabSize).</exception>
    /// <exception cref="ArgumentException">No tokens, or more than MaxContext.</exception>
    internal void SumHiddenStates(ReadOnlySpan<int> tokens, Span<double> sum, CancellationToken cancellationToken)
    {
        int hiddenSize = _model.Shape.HiddenSize;
        if (tokens.IsEmpty || tokens.Length > _model.Shape.MaxContext)
            throw new ArgumentException($"1 to MaxContext ({_model.Shape.MaxContext}) tokens are needed, not {tokens.Length}.", nameof(tokens));
        if (sum.Length != hiddenSize)
            throw new ArgumentException($"The sum has {hiddenSize} elements.", nameof(sum));
        EnterBusy();
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _position = 0;
            CheckForward(tokens, nameof(tokens), "");
            _model.Enter();
            try
            {
                (ForwardPass pass, PassRows rows) = OwnPass();
                for (int start = 0; start < tokens.Length; start += pass.Rows)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    ReadOnlySpan<int> chunk = tokens.Slice(start, Math.Min(pass.Rows, tokens.Length - start));
                    rows.Clear();
                    for (int i = 0; i < chunk.Length; i++)
                        rows.Add(chunk[i], Cache, _position + i, output: true);
                    pass.Evaluate(rows, logits: null);
                    _position += chunk.Length;
                    for (int i = 0; i < chunk.Length; i++)
                    {
                        ReadOnlySpan<float> hidden = pass.NormedHidden(i);
                        for (int j = 0; j < hiddenSize; j++)
                            sum[j] += hidden[j];
                    }
                }
            }
            finally
            {
                _model.Exit();
            }
        }
        finally
        {
            ExitBusy();
        }
    }

    /// <summary>Empties the KV cache: the next token is evaluated at position 0.</summary>
    public void Reset()
    {
        EnterBusy("The session is evaluating on another thread; reset it after Forward returns.");
        _position = 0;
        ExitBusy();
    }

    /// <summary>Ends the session and stops its worker threads; later calls throw <see cref="ObjectDisposedException"/>.</summary>
    /// <exception cref="InvalidOperationException">Forward runs on another thread (the pool is not stopped under it).</exception>
    public void Dispose()
    {
        EnterBusy("The session is evaluating on another thread; dispose it after Forward returns.");
        if (!_disposed)
        {
            _disposed = true;
            _pool?.Dispose();
        }
        ExitBusy();
        GC.SuppressFinalize(this);
    }

    /// <summary>Throws <see cref="ObjectDisposedException"/> once the session is disposed.</summary>
    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>
    /// Writes the session's state to <paramref name="stream"/>: a versioned header (the compiled shape, the weights'
    /// fingerprint, the cache's element type, the position), the last logits (little-endian F32) and the KV cache up to
    /// <see cref="Position"/> in its format (<see cref="SessionOptions.KvCache"/>). <see cref="Restore"/> reads it back into a
    /// session of a model of the same shape and weights whose cache has the same format.
    /// </summary>
    public void Save(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        EnterBusy("The session is evaluating on another thread.");
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            Span<int> header = stackalloc int[HeaderInts];
            WriteShape(header);
            header[HeaderInts - 1] = _position;
            stream.Write(MemoryMarshal.AsBytes(header));
            stream.Write(MemoryMarshal.AsBytes(new ReadOnlySpan<ulong>(in _weightsFingerprint)));
            stream.Write(MemoryMarshal.AsBytes(_logits.AsSpan()));
            Cache.Write(stream, _position);
        }
        finally
        {
            ExitBusy();
        }
    }

    /// <summary>Replaces the session's state with one written by <see cref="Save"/>.</summary>
    /// <exception cref="InvalidDataException">
    /// The data is not a saved state of this compiled shape and these weights with this KV cache format, or is truncated; the session is then reset.
    /// </exception>
    public void Restore(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        EnterBusy("The session is evaluating on another thread.");
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _position = 0;
            Span<int> header = stackalloc int[HeaderInts];
            KvCache.ReadExactly(stream, MemoryMarshal.AsBytes(header));
            if (header[0] != StateMagic || header[1] != StateVersion)
                throw new InvalidDataException($"Not a saved Llama.Compiled session state of version {StateVersion} (magic 0x{header[0]:X8}, version {header[1]}).");
            Span<int> expected = stackalloc int[HeaderInts];
            WriteShape(expected);
            ReadOnlySpan<string> names = ["magic", "version", "LayerCount", "KvHeadCount", "HeadDim", "MaxContext", "VocabSize", "HiddenSize", "HeadCount", "IntermediateSize", "cache element type"];
            if (header[10] != expected[10])
                throw new InvalidDataException($"The state was saved from a {(KvCacheFormat)header[10]} KV cache; this session's is {Cache.Format}.");
            for (int i = 2; i < names.Length; i++)
            {
                if (header[i] != expected[i])
                    throw new InvalidDataException($"The state was saved by a model of another shape: {names[i]} is {header[i]}, this model has {expected[i]}.");
            }
            int position = header[HeaderInts - 1];
            int maxContext = _model.Shape.MaxContext;
            if (position < 0 || position > maxContext)
                throw new InvalidDataException($"The saved position {position} is outside [0, {maxContext}].");
            ulong fingerprint = 0;
            KvCache.ReadExactly(stream, MemoryMarshal.AsBytes(new Span<ulong>(ref fingerprint)));
            if (fingerprint != _weightsFingerprint)
                throw new InvalidDataException($"The state was saved by a model of the same shape with other weights (fingerprint {fingerprint:x16}, this model's {_weightsFingerprint:x16}).");
            KvCache.ReadExactly(stream, MemoryMarshal.AsBytes(_logits.AsSpan()));
            Cache.Read(stream, position);
            _position = position;
        }
        finally
        {
            ExitBusy();
        }
    }

    /// <summary>Magic, version, 8 shape values, the cache's element type, the position.</summary>
    private const int HeaderInts = 12;

    private void WriteShape(Span<int> header)
    {
        LlamaModelShape s = _model.Shape;
        header[0] = StateMagic;
        header[1] = StateVersion;
        header[2] = s.LayerCount;
        header[3] = s.KvHeadCount;
        header[4] = s.HeadDim;
        header[5] = s.MaxContext;
        header[6] = s.VocabSize;
        header[7] = s.HiddenSize;
        header[8] = s.HeadCount;
        header[9] = s.IntermediateSize;
        header[10] = (int)Cache.Format;
    }

    /// <summary>Marks the session in use by this thread; throws <see cref="InvalidOperationException"/> when another thread uses it.</summary>
    internal void EnterBusy(string message = "The session is already evaluating on another thread; a session is not thread-safe, create one per concurrent sequence.")
    {
        if (Interlocked.Exchange(ref _busy, 1) != 0)
            throw new InvalidOperationException(message);
    }

    /// <summary>Ends what <see cref="EnterBusy"/> began.</summary>
    internal void ExitBusy() => Volatile.Write(ref _busy, 0);
}
