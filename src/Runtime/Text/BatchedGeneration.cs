using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;

namespace Llama.Compiled;

/// <summary>
/// One generation of a <see cref="BatchedGenerator"/>: its text as it streams, and its result. The generator's scheduler
/// writes; any thread reads.
/// </summary>
public sealed class BatchedGeneration
{
    private readonly BatchedGenerator _owner;
    private readonly Channel<string> _chunks = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleWriter = true, SingleReader = true });
    private readonly TaskCompletionSource<GenerationResult> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly long _queuedAt = Stopwatch.GetTimestamp();
    private readonly int[] _nextToken = new int[1];     // [1] the token a decoding pass evaluates
    private long _admittedAt, _firstTokenAt;
    private CancellationToken _callerToken;
    private CancellationTokenRegistration _registration;
    private volatile bool _cancelRequested;

    internal BatchedGeneration(BatchedGenerator owner, TokenGeneration generation, int[] promptIds, int maxNewTokens)
    {
        _owner = owner;
        Generation = generation;
        PromptIds = promptIds;
        MaxNewTokens = maxNewTokens;
    }

    /// <summary>
    /// The generated text, chunk by chunk as it is generated; ends when the generation ends. When it is cancelled or fails,
    /// the enumeration throws that <see cref="OperationCanceledException"/> or exception. Read it once.
    /// </summary>
    public IAsyncEnumerable<string> ReadChunksAsync(CancellationToken cancellationToken = default) => _chunks.Reader.ReadAllAsync(cancellationToken);

    /// <summary>The text with its counts, timings and finish reason, once the generation ended; cancelled when it was cancelled.</summary>
    public Task<GenerationResult> Completion => _completion.Task;

    /// <summary>Tokens of the prompt.</summary>
    public int PromptTokens => PromptIds.Length;

    /// <summary>Ends the generation before the next forward pass and frees its sequence; <see cref="Completion"/> is then cancelled.</summary>
    public void Cancel()
    {
        _cancelRequested = true;
        _owner.Wake();
    }

    internal TokenGeneration Generation { get; }
    internal int[] PromptIds { get; }
    internal int MaxNewTokens { get; }
    internal ILlamaSession? Session { get; private set; }
    internal int Prefilled { get; set; }                 // prompt tokens in the session's cache
    internal int PendingChunk { get; set; }              // prompt tokens in the pass being evaluated
    internal bool Decoding { get; set; }                 // the prompt is in; each pass evaluates the last drawn token
    internal bool CancelRequested => _cancelRequested;
    internal bool Ended => _completion.Task.IsCompleted;

    /// <summary>The last drawn token, as a batch item's tokens.</summary>
    internal ReadOnlyMemory<int> NextTokenMemory
    {
        get
        {
            _nextToken[0] = Generation.NextToken;
            return _nextToken;
        }
    }

    internal void Watch(CancellationToken cancellationToken)
    {
        _callerToken = cancellationToken;
        if (cancellationToken.CanBeCanceled)
            _registration = cancellationToken.Register(static state => ((BatchedGeneration)state!).Cancel(), this);
    }

    internal void Admit(ILlamaSession session)
    {
        Session = session;
        _admittedAt = Stopwatch.GetTimestamp();
    }

    /// <summary>Records the first token; returns the time since <see cref="BatchedGenerator.Start"/>.</summary>
    internal TimeSpan MarkFirstToken()
    {
        _firstTokenAt = Stopwatch.GetTimestamp();
        return Stopwatch.GetElapsedTime(_queuedAt, _firstTokenAt);
    }

    internal void Write(string chunk)
    {
        if (chunk.Length > 0)
            _chunks.Writer.TryWrite(chunk);
    }

    internal void Complete(StopReason reason)
    {
        _registration.Dispose();
        if (reason == StopReason.Cancelled)
        {
            CancellationToken token = _callerToken.IsCancellationRequested ? _callerToken : new CancellationToken(canceled: true);
            _chunks.Writer.TryComplete(new OperationCanceledException("The generation was cancelled.", token));
            _completion.TrySetCanceled(token);
            return;
        }
        long end = Stopwatch.GetTimestamp();
        long admitted = _admittedAt == 0 ? _queuedAt : _admittedAt, first = _firstTokenAt == 0 ? end : _firstTokenAt;
        var stats = new GenerationStats(PromptIds.Length, Generation.Generated, Stopwatch.GetElapsedTime(admitted, first),
            Stopwatch.GetElapsedTime(first, end), reason, Generation.Seed)
        {
            QueueTime = Stopwatch.GetElapsedTime(_queuedAt, admitted),
        };
        _chunks.Writer.TryComplete();
        _completion.TrySetResult(new GenerationResult(Generation.Text, stats));
    }

    internal void Fail(Exception exception)
    {
        _registration.Dispose();
        _chunks.Writer.TryComplete(exception);
        _completion.TrySetException(exception);
    }
}
