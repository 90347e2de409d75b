using System;
using System.Runtime.CompilerServices;
using System.Threading;
using Llama.Compiled.CompilerServices;

namespace Llama.Compiled;

/// <summary>
/// The runtime half of a compiled model: the weights, their lifetime, and the RoPE table. A class marked with
/// <see cref="LlamaModelAttribute"/> derives from it; the generated half binds the weights to its shape and supplies
/// the forward pass through its session type. The weights are shared read-only by every session.
/// </summary>
public abstract class LlamaModel : ILlamaModel
{
    private int _disposed;    // 1 once Dispose started
    private int _activeCalls; // session calls reading the weights right now

    /// <summary>Takes ownership of <paramref name="weights"/>, already checked against <paramref name="shape"/>.</summary>
    /// <param name="weights">The opened weights.</param>
    /// <param name="shape">The compiled shape.</param>
    /// <param name="ropeInverseFrequencies">theta^(-2j/HeadDim) per rotated pair, as the generator computed them.</param>
    /// <param name="prefillChunk">Rows of a session's own forward pass (the compiled PrefillChunk).</param>
    protected LlamaModel(ModelWeights weights, LlamaModelShape shape, ReadOnlySpan<float> ropeInverseFrequencies, int prefillChunk)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentOutOfRangeException.ThrowIfLessThan(prefillChunk, 1);
        SessionPassRows = prefillChunk;
        Weights = weights;
        Shape = shape;
        Rope = new RopeTable(ropeInverseFrequencies, shape.MaxContext, shape.HeadDim, weights.RopeLayout);
    }

    /// <summary>The shape the model was compiled for.</summary>
    public LlamaModelShape Shape { get; }

    /// <summary>The weights; their views are valid until the model is disposed.</summary>
    protected ModelWeights Weights { get; }

    /// <summary>Cos/sin of every position, in the pairing of the stored q/k rows.</summary>
    protected internal RopeTable Rope { get; }

    /// <summary>Rows of a session's own forward pass: the most tokens of one prefill chunk.</summary>
    internal int SessionPassRows { get; }

    /// <summary>Fingerprint of the weights, written into saved session states (see <see cref="ModelWeights.Fingerprint"/>).</summary>
    internal ulong WeightsFingerprint => Weights.Fingerprint;

    /// <inheritdoc/>
    ILlamaSession ILlamaModel.CreateSession() => OpenSession(new SessionOptions());

    /// <inheritdoc/>
    public LlamaBatch CreateBatch(BatchOptions? options = null)
    {
        ThrowIfDisposed();
        return new LlamaBatch(this, options ?? new BatchOptions());
    }

    /// <summary>A new session of this model (the generated class's <c>CreateSession</c>).</summary>
    protected abstract LlamaSession OpenSession(SessionOptions options);

    /// <summary>
    /// A forward pass of this model with buffers for <paramref name="rows"/> rows, its kernels run on <paramref name="pool"/>
    /// (the generated <c>Pass</c> class).
    /// </summary>
    protected abstract ForwardPass CreatePass(WorkerPool pool, int rows);

    /// <summary>What <see cref="CreatePass"/> creates, for the runtime's sessions and batches.</summary>
    internal ForwardPass NewPass(WorkerPool pool, int rows) => CreatePass(pool, rows);

    /// <summary>Releases the weights; sessions of this model throw <see cref="ObjectDisposedException"/> afterwards.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        // A Forward that entered before Dispose may still read the weights: unmap only after it left.
        var spin = new SpinWait();
        while (Volatile.Read(ref _activeCalls) > 0)
            spin.SpinOnce();
        Weights.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>Throws <see cref="ObjectDisposedException"/> once the model is disposed.</summary>
    protected void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

    /// <summary>Registers a session call that reads the weights; throws if the model is disposed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void Enter()
    {
        Interlocked.Increment(ref _activeCalls);
        if (Volatile.Read(ref _disposed) != 0)
        {
            Interlocked.Decrement(ref _activeCalls);
            throw new ObjectDisposedException(GetType().FullName, "The model was disposed; its sessions cannot run.");
        }
    }

    /// <summary>Ends a call registered by <see cref="Enter"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void Exit() => Interlocked.Decrement(ref _activeCalls);
}
