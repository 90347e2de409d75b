// INTERIM: a stand-in for src/Runtime/Text/BatchedGenerator.cs (being written on main) with the same public
// surface, so that the HTTP layer is written against that API now. It runs each generation in a session of its
// own (a pool of MaxSequences sessions) instead of sharing forward passes. Delete this file when the runtime's
// BatchedGenerator lands.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Runtime.CompilerServices;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;
using Microsoft.ML.Tokenizers;

namespace Llama.Compiled.Server.Interim;

public sealed record BatchedGeneratorOptions
{
    public int MaxSequences { get; init; } = 8;
    public int MaxQueue { get; init; } = 64;
    public int Threads { get; init; } = Math.Min(Environment.ProcessorCount, 8);
    public int MaxBatchTokens { get; init; } = 64;
}

public sealed class GenerationQueueFullException : InvalidOperationException
{
    public GenerationQueueFullException() : base("The generation queue is full.") { }
}

public sealed class BatchedGeneration
{
    internal readonly Channel<string> Chunks = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    internal readonly TaskCompletionSource<GenerationResult> Result = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _read;

    public Task<GenerationResult> Completion => Result.Task;

    public async IAsyncEnumerable<string> ReadChunksAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _read, 1) != 0)
            throw new InvalidOperationException("The chunks can be read once.");
        await foreach (string chunk in Chunks.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            yield return chunk;
        await Completion.ConfigureAwait(false); // rethrows cancellation or an error
    }
}

public sealed class BatchedGenerator : IDisposable
{
    private readonly ConcurrentBag<TextGenerator> _idle = [];
    private readonly List<ILlamaSession> _sessions = [];
    private readonly SemaphoreSlim _slots;
    private readonly object _gate = new();
    private int _queued, _active, _running;
    private bool _accepting = true, _disposed;
    private readonly CancellationTokenSource _drain = new();
    private TaskCompletionSource _idleSignal = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public BatchedGenerator(ILlamaModel model, Tokenizer tokenizer, BatchedGeneratorOptions? options = null)
    {
        Model = model;
        Tokenizer = tokenizer;
        Options = options ?? new BatchedGeneratorOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(Options.MaxSequences, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(Options.MaxQueue);
        for (int i = 0; i < Options.MaxSequences; i++)
        {
            ILlamaSession session = model.CreateSession();
            _sessions.Add(session);
            _idle.Add(new TextGenerator(session, tokenizer));
        }
        _slots = new SemaphoreSlim(Options.MaxSequences, Options.MaxSequences);
        _idleSignal.SetResult();
    }

    public ILlamaModel Model { get; }
    public Tokenizer Tokenizer { get; }
    public BatchedGeneratorOptions Options { get; }
    public int QueueLength => Volatile.Read(ref _queued);
    public int ActiveSequences => Volatile.Read(ref _active);

    public int[] EncodePrompt(string prompt)
    {
        TextGenerator any = new(_sessions[0], Tokenizer);
        return any.EncodePrompt(prompt);
    }

    public BatchedGeneration Start(IReadOnlyList<int> promptIds, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(promptIds);
        if (promptIds.Count == 0)
            throw new ArgumentException("The prompt has no tokens; start it with BOS.", nameof(promptIds));
        if (promptIds.Count >= Model.Shape.MaxContext)
            throw new ArgumentException($"The prompt is {promptIds.Count} tokens; the context holds {Model.Shape.MaxContext}.", nameof(promptIds));
        options ??= new GenerationOptions();
        if (options.MaxNewTokens < 0)
            throw new ArgumentOutOfRangeException(nameof(options), "MaxNewTokens must be >= 0.");
        _ = new Sampler(Model.Shape.VocabSize, options.Sampling); // validates the sampling options
        var generation = new BatchedGeneration();
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_accepting)
                throw new InvalidOperationException("The generator no longer accepts generations.");
            // Waiting for a slot = queued; at most MaxQueue wait.
            int waiting = _running - Options.MaxSequences;
            if (waiting >= Options.MaxQueue)
                throw new GenerationQueueFullException();
            _running++;
            if (_running == 1)
                _idleSignal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _queued++;
        }
        _ = Task.Run(() => RunAsync(promptIds, options, generation, cancellationToken));
        return generation;
    }

    private async Task RunAsync(IReadOnlyList<int> promptIds, GenerationOptions options, BatchedGeneration generation, CancellationToken cancellationToken)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _drain.Token);
        CancellationToken token = linked.Token;
        bool acquired = false;
        try
        {
            try
            {
                await _slots.WaitAsync(token).ConfigureAwait(false);
                acquired = true;
            }
            finally
            {
                Interlocked.Decrement(ref _queued);
            }
            Interlocked.Increment(ref _active);
            _idle.TryTake(out TextGenerator? generator);
            try
            {
                foreach (string chunk in generator!.Generate(promptIds, options, token))
                    generation.Chunks.Writer.TryWrite(chunk);
                generation.Chunks.Writer.TryComplete();
                generation.Result.TrySetResult(generator.LastResult!);
            }
            finally
            {
                _idle.Add(generator!);
                Interlocked.Decrement(ref _active);
            }
        }
        catch (OperationCanceledException)
        {
            generation.Chunks.Writer.TryComplete();
            generation.Result.TrySetCanceled(token);
        }
        catch (Exception e)
        {
            generation.Chunks.Writer.TryComplete(e);
            generation.Result.TrySetException(e);
        }
        finally
        {
            if (acquired)
                _slots.Release();
            lock (_gate)
            {
                if (--_running == 0)
                    _idleSignal.TrySetResult();
            }
        }
    }

    public void StopAccepting()
    {
        lock (_gate)
            _accepting = false;
    }

    public async Task DrainAsync(CancellationToken cancellationToken)
    {
        Task idle;
        lock (_gate)
            idle = _idleSignal.Task;
        try
        {
            await idle.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            _drain.Cancel();
            await idle.ConfigureAwait(false);
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
                return;
            _disposed = true;
            _accepting = false;
        }
        _drain.Cancel();
        foreach (ILlamaSession session in _sessions)
            session.Dispose();
    }
}
