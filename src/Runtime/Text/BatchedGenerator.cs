using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled;

/// <summary>How a <see cref="BatchedGenerator"/> runs.</summary>
public sealed record BatchedGeneratorOptions
{
    /// <summary>Sequences generated at once, each with a session (a KV cache of MaxContext positions) of its own. Default 8.</summary>
    public int MaxSequences { get; init; } = 8;

    /// <summary>Generations that may wait for a free sequence; <see cref="BatchedGenerator.Start"/> refuses more. Default 64.</summary>
    public int MaxQueue { get; init; } = 64;

    /// <summary>Threads of the forward passes, the scheduler's included (default: the processor count, at most 8).</summary>
    public int Threads { get; init; } = Math.Min(Environment.ProcessorCount, 8);

    /// <summary>
    /// Most tokens one forward pass evaluates: one per decoding sequence, the rest for prompts being prefilled, in chunks.
    /// At least <see cref="MaxSequences"/>. Default 64.
    /// </summary>
    public int MaxBatchTokens { get; init; } = 64;

    /// <summary>Where the generator's meter comes from (dependency injection's <see cref="IMeterFactory"/>); null for a meter of its own.</summary>
    public IMeterFactory? MeterFactory { get; init; }
}

/// <summary><see cref="BatchedGenerator.Start"/> was called while <see cref="BatchedGeneratorOptions.MaxQueue"/> generations wait.</summary>
public sealed class GenerationQueueFullException : InvalidOperationException
{
    /// <summary>Creates the exception with the default message.</summary>
    public GenerationQueueFullException() : base("The generation queue is full; retry later.")
    {
    }

    /// <summary>Creates the exception with <paramref name="message"/>.</summary>
    public GenerationQueueFullException(string message) : base(message)
    {
    }

    /// <summary>Creates the exception with <paramref name="message"/> and the exception that caused it.</summary>
    public GenerationQueueFullException(string message, Exception innerException) : base(message, innerException)
    {
    }
}

/// <summary>
/// Generates text for many requests at once over one model, with continuous batching as llama.cpp's server and vLLM do:
/// every forward pass evaluates the next token of each running generation and chunks of the prompts that are starting, in
/// one <see cref="LlamaBatch"/>, so the weights are read once per step for all of them. A generation joins as soon as a
/// sequence is free and leaves when it ends, without waiting for the others. Each generation streams and stops exactly as
/// <see cref="TextGenerator"/> would with the same prompt and options (same greedy text).
/// </summary>
/// <example>
/// <code>
/// using var generator = new BatchedGenerator(model, tokenizer, new BatchedGeneratorOptions { MaxSequences = 8 });
/// BatchedGeneration run = generator.Start(generator.EncodePrompt("Once upon a time"), options, cancellationToken);
/// await foreach (string chunk in run.ReadChunksAsync(cancellationToken))
///     Console.Write(chunk);
/// GenerationResult result = await run.Completion;
/// </code>
/// </example>
/// <remarks>
/// Thread-safe: any thread may start generations. The forward passes and sampling run on one scheduler thread of the
/// generator (with the batch's worker threads); readers only wait for chunks.
/// </remarks>
public sealed class BatchedGenerator : IDisposable
{
    /// <summary>The name of the meter whose instruments report queue length, active sequences, tokens and time to first token.</summary>
    public const string MeterName = "Llama.Compiled";

    private readonly object _lock = new();
    private readonly Queue<BatchedGeneration> _queue = new();   // waiting for a sequence, under _lock
    private readonly List<BatchedGeneration> _active = [];      // holding a sequence: the scheduler's own
    private readonly Stack<ILlamaSession> _freeSessions = new(); // under _lock
    private readonly List<ILlamaSession> _sessions = [];        // every session created, at most MaxSequences
    private readonly LlamaBatch _batch;
    private readonly BatchItem[] _items;                        // [MaxSequences] one pass's items
    private readonly BatchedGeneration[] _itemGenerations;      // [MaxSequences] whose item each is
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly Thread _scheduler;
    private readonly Meter _meter;
    private readonly Counter<long> _tokens;
    private readonly Histogram<double> _timeToFirstToken;
    private readonly Counter<long> _requests;
    private TaskCompletionSource? _drained;                     // DrainAsync's, under _lock
    private int _activeCount;                                   // _active.Count, under _lock
    private bool _accepting = true;
    private volatile bool _cancelAllRequested;                  // DrainAsync's token fired: the scheduler cancels every running generation
    private volatile bool _disposed;

    /// <summary>Creates a generator over <paramref name="model"/> and starts its scheduler thread (idle until a generation starts).</summary>
    /// <param name="model">The model; not disposed by the generator.</param>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <param name="options">Sequences, queue, threads, tokens per pass; null for the defaults.</param>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public BatchedGenerator(ILlamaModel model, Tokenizer tokenizer, BatchedGeneratorOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokenizer);
        options ??= new BatchedGeneratorOptions();
        if (options.MaxSequences < 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxSequences, "MaxSequences must be >= 1.");
        if (options.MaxQueue < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxQueue, "MaxQueue must be >= 0.");
        if (options.MaxBatchTokens < options.MaxSequences)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxBatchTokens, $"MaxBatchTokens must be >= MaxSequences ({options.MaxSequences}): every running sequence evaluates a token per pass.");
        Model = model;
        Tokenizer = tokenizer;
        Options = options;
        _batch = model.CreateBatch(new BatchOptions { Threads = options.Threads, MaxTokens = options.MaxBatchTokens });
        _items = new BatchItem[options.MaxSequences];
        _itemGenerations = new BatchedGeneration[options.MaxSequences];

        _meter = options.MeterFactory?.Create(MeterName) ?? new Meter(MeterName);
        _meter.CreateObservableGauge("llama_compiled.queue.length", () => QueueLength, "{request}", "Generations waiting for a free sequence.");
        _meter.CreateObservableGauge("llama_compiled.sequences.active", () => ActiveSequences, "{sequence}", "Generations holding a sequence.");
        _tokens = _meter.CreateCounter<long>("llama_compiled.tokens", "{token}", "Tokens evaluated from prompts (gen_ai.token.type = input) and generated (output).");
        _timeToFirstToken = _meter.CreateHistogram<double>("gen_ai.server.time_to_first_token", "s", "From Start to the first generated token: queue, prefill and first draw.");
        _requests = _meter.CreateCounter<long>("llama_compiled.generations", "{generation}", "Generations ended, by finish reason.");

        _scheduler = new Thread(SchedulerLoop, maxStackSize: 4 << 20) { IsBackground = true, Name = "Llama.Compiled batch scheduler" };
        _scheduler.Start();
    }

    /// <summary>The model generations run on.</summary>
    public ILlamaModel Model { get; }

    /// <summary>The model's tokenizer.</summary>
    public Tokenizer Tokenizer { get; }

    /// <summary>The options the generator was created with.</summary>
    public BatchedGeneratorOptions Options { get; }

    /// <summary>Generations waiting for a free sequence.</summary>
    public int QueueLength
    {
        get
        {
            lock (_lock)
                return _queue.Count;
        }
    }

    /// <summary>Generations holding a sequence (prefilling or decoding).</summary>
    public int ActiveSequences => Volatile.Read(ref _activeCount);

    /// <summary>The ids a generation of <paramref name="prompt"/> evaluates, as <see cref="TextGenerator.EncodePrompt(string)"/> gives them (BOS first).</summary>
    public int[] EncodePrompt(string prompt) => TextGenerator.EncodePromptIds(Tokenizer, Model.Shape.BosTokenId, prompt);

    /// <summary>
    /// Queues a generation of the continuation of <paramref name="promptIds"/> (used as they are: see <see cref="EncodePrompt"/>).
    /// It starts as soon as a sequence is free; its chunks stream through <see cref="BatchedGeneration.ReadChunksAsync"/>.
    /// Cancelling <paramref name="cancellationToken"/> (or <see cref="BatchedGeneration.Cancel"/>) ends it before the next
    /// forward pass and frees its sequence.
    /// </summary>
    /// <exception cref="ArgumentException">The prompt is empty, has an id outside the vocabulary, or leaves no room in the context for a token.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    /// <exception cref="GenerationQueueFullException"><see cref="BatchedGeneratorOptions.MaxQueue"/> generations already wait.</exception>
    /// <exception cref="InvalidOperationException">The generator stopped accepting (<see cref="StopAccepting"/>).</exception>
    /// <exception cref="ObjectDisposedException">The generator is disposed.</exception>
    public BatchedGeneration Start(IReadOnlyList<int> promptIds, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        LlamaModelShape shape = Model.Shape;
        int[] ids = TextGenerator.CheckIds(promptIds, shape.VocabSize);
        TextGenerator.RunSetup setup = TextGenerator.Prepare(ids, options, shape);
        if (ids.Length >= shape.MaxContext && setup.Options.MaxNewTokens > 0)
            throw new ArgumentException($"The prompt is {ids.Length} tokens; the context holds {shape.MaxContext}, with room for none generated.", nameof(promptIds));
        var generation = new BatchedGeneration(this, new TokenGeneration(Tokenizer, shape, ids, setup.Options, setup.Sampler), ids, setup.Options.MaxNewTokens);
        lock (_lock)
        {
            if (!_accepting)
                throw new InvalidOperationException("The generator no longer accepts generations: it is stopping.");
            // Free sequences take queued generations at the scheduler's next pass: only the rest wait.
            if (_queue.Count - (Options.MaxSequences - _activeCount) >= Options.MaxQueue)
                throw new GenerationQueueFullException($"{Options.MaxQueue} generations already wait for one of {Options.MaxSequences} sequences; retry later.");
            _queue.Enqueue(generation);
        }
        generation.Watch(cancellationToken);
        _wake.Set();
        return generation;
    }

    /// <summary>From now on <see cref="Start"/> throws <see cref="InvalidOperationException"/>; generations already started go on.</summary>
    public void StopAccepting()
    {
        lock (_lock)
            _accepting = false;
    }

    /// <summary>
    /// Completes when no generation runs or waits. When <paramref name="cancellationToken"/> fires first, every generation is
    /// cancelled (their <see cref="BatchedGeneration.Completion"/> is cancelled) and the task completes once they are gone.
    /// Call <see cref="StopAccepting"/> first for a graceful shutdown.
    /// </summary>
    public async Task DrainAsync(CancellationToken cancellationToken = default)
    {
        Task drained;
        lock (_lock)
        {
            if (_queue.Count == 0 && _activeCount == 0)
                return;
            _drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            drained = _drained.Task;
        }
        using (cancellationToken.Register(static state => ((BatchedGenerator)state!).CancelAll(), this))
            await drained.ConfigureAwait(false);
    }

    /// <summary>Stops the scheduler, cancels what still runs or waits, and releases the sessions and the batch (not the model).</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        StopAccepting();
        _disposed = true;
        _wake.Set();
        _scheduler.Join();
        lock (_lock)
        {
            while (_queue.TryDequeue(out BatchedGeneration? waiting))
                waiting.Fail(new ObjectDisposedException(nameof(BatchedGenerator), "The generator was disposed before the generation started."));
            _drained?.TrySetResult();
        }
        foreach (BatchedGeneration running in _active)
            running.Fail(new ObjectDisposedException(nameof(BatchedGenerator), "The generator was disposed during the generation."));
        _active.Clear();
        foreach (ILlamaSession session in _sessions)
            session.Dispose();
        _batch.Dispose();
        if (Options.MeterFactory is null)
            _meter.Dispose(); // a factory's meters are the factory's to dispose
        _wake.Dispose();
    }

    /// <summary>Wakes the scheduler: a generation was queued or cancelled.</summary>
    internal void Wake()
    {
        if (!_disposed)
            _wake.Set();
    }

    private void CancelAll()
    {
        lock (_lock)
        {
            foreach (BatchedGeneration waiting in _queue)
                waiting.Cancel();
        }
        // _active belongs to the scheduler: the flag is what it reads.
        _cancelAllRequested = true;
        Wake();
    }

    private void SchedulerLoop()
    {
        while (!_disposed)
        {
            _wake.Reset();
            if (!Step() && !_disposed)
                _wake.Wait();
        }
    }

    /// <summary>One forward pass: admit waiting generations, drop cancelled ones, evaluate, sample, stream. False when idle.</summary>
    private bool Step()
    {
        Admit();
        for (int i = _active.Count - 1; i >= 0; i--)
        {
            BatchedGeneration generation = _active[i];
            if (generation.CancelRequested || _cancelAllRequested)
            {
                generation.Complete(StopReason.Cancelled);
                Release(i);
            }
        }
        if (_active.Count == 0)
        {
            lock (_lock)
            {
                if (_queue.Count == 0)
                {
                    _cancelAllRequested = false;
                    _drained?.TrySetResult();
                    _drained = null;
                    return false;
                }
            }
            return true;
        }

        // Every decoding sequence evaluates its next token; prompts take what is left of the pass, in arrival order.
        int count = 0, budget = Options.MaxBatchTokens;
        foreach (BatchedGeneration generation in _active)
        {
            if (generation.Decoding)
            {
                _itemGenerations[count] = generation;
                _items[count++] = new BatchItem(generation.Session!, generation.NextTokenMemory);
                budget--;
            }
        }
        foreach (BatchedGeneration generation in _active)
        {
            if (generation.Decoding || budget == 0)
                continue;
            int chunk = Math.Min(budget, generation.PromptIds.Length - generation.Prefilled);
            _itemGenerations[count] = generation;
            _items[count++] = new BatchItem(generation.Session!, generation.PromptIds.AsMemory(generation.Prefilled, chunk));
            generation.PendingChunk = chunk;
            budget -= chunk;
        }

        try
        {
            _batch.Forward(_items.AsSpan(0, count));
        }
        catch (Exception e)
        {
            // What the caches hold is unknown: the pass's generations fail, their sessions start afresh.
            for (int i = 0; i < count; i++)
            {
                _itemGenerations[i].Fail(e);
                _itemGenerations[i].Session!.Reset();
            }
            RemoveEnded();
            return true;
        }

        int maxContext = Model.Shape.MaxContext;
        for (int i = 0; i < count; i++)
        {
            BatchedGeneration generation = _itemGenerations[i];
            _itemGenerations[i] = null!;
            _items[i] = default;
            try
            {
                if (!generation.Decoding)
                {
                    generation.Prefilled += generation.PendingChunk;
                    _tokens.Add(generation.PendingChunk, new KeyValuePair<string, object?>("gen_ai.token.type", "input"));
                    if (generation.Prefilled < generation.PromptIds.Length)
                        continue;
                    if (generation.MaxNewTokens == 0)
                    {
                        generation.Complete(StopReason.MaxNewTokens);
                        continue;
                    }
                }
                ILlamaSession session = generation.Session!;
                TokenGeneration tokens = generation.Generation;
                if (!generation.Decoding)
                {
                    generation.Decoding = true;
                    _timeToFirstToken.Record(generation.MarkFirstToken().TotalSeconds);
                }
                int generated = tokens.Generated;
                generation.Write(tokens.Step(session.Logits, session.Position >= maxContext));
                if (tokens.Generated > generated)
                    _tokens.Add(1, new KeyValuePair<string, object?>("gen_ai.token.type", "output"));
                if (tokens.StopReason is not null)
                {
                    generation.Write(tokens.Finish());
                    generation.Complete(tokens.StopReason.Value);
                }
            }
            catch (Exception e)
            {
                generation.Fail(e);
            }
        }
        RemoveEnded();
        return true;
    }

    /// <summary>Moves waiting generations to free sequences (created on first need, reset on reuse).</summary>
    private void Admit()
    {
        lock (_lock)
        {
            // A generation cancelled while it waits leaves the queue now, not when a sequence frees.
            int waiting = _queue.Count;
            for (int i = 0; i < waiting; i++)
            {
                BatchedGeneration generation = _queue.Dequeue();
                if (generation.CancelRequested || _cancelAllRequested)
                    generation.Complete(StopReason.Cancelled);
                else
                    _queue.Enqueue(generation);
            }
            while (_queue.Count > 0)
            {
                ILlamaSession session;
                if (_freeSessions.Count > 0)
                    session = _freeSessions.Pop();
                else if (_sessions.Count < Options.MaxSequences)
                {
                    session = Model.CreateSession();
                    _sessions.Add(session);
                }
                else
                    break;
                BatchedGeneration generation = _queue.Dequeue();
                session.Reset();
                generation.Admit(session);
                _active.Add(generation);
                _activeCount = _active.Count;
            }
        }
    }

    private void RemoveEnded()
    {
        for (int i = _active.Count - 1; i >= 0; i--)
        {
            if (_active[i].Ended)
                Release(i);
        }
    }

    private void Release(int activeIndex)
    {
        BatchedGeneration generation = _active[activeIndex];
        _requests.Add(1, new KeyValuePair<string, object?>("finish_reason", generation.Completion.IsCompletedSuccessfully ? generation.Completion.Result.FinishReason.ToString() : generation.Completion.IsCanceled ? "Cancelled" : "Error"));
        _active.RemoveAt(activeIndex);
        lock (_lock)
        {
            _freeSessions.Push(generation.Session!);
            _activeCount = _active.Count;
        }
    }
}
