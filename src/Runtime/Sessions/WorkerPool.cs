using System;
using System.ComponentModel;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Threading;

namespace Llama.Compiled.CompilerServices;

/// <summary>Work that a <see cref="WorkerPool"/> splits into contiguous ranges of items.</summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public interface IParallelJob
{
    /// <summary>Processes items [<paramref name="start"/>, <paramref name="end"/>) on worker <paramref name="worker"/> (0 = the calling thread).</summary>
    void Execute(int start, int end, int worker);
}

/// <summary>
/// A persistent set of threads that run one job at a time, split into contiguous ranges: the calling
/// thread takes the first range, each worker one of the others. Workers spin for a millisecond after a
/// job (a forward pass issues jobs microseconds apart) and then sleep, so an idle pool costs nothing.
/// Running a job allocates nothing: the job is a struct on the caller's stack, invoked through a
/// function pointer.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public sealed unsafe class WorkerPool : IDisposable
{
    /// <summary>
    /// How long a worker spins for the next job before it sleeps: longer than the serial stretches inside a
    /// forward pass (a small model's layer between two split calls takes 50–100 µs), so that a job never waits
    /// for a sleeping thread to be woken (tens of µs on a VM), and short enough that an idle pool goes quiet.
    /// </summary>
    private static readonly long s_spinTicks = Stopwatch.Frequency / 1000; // 1 ms

    private readonly Thread[] _workers;
    private readonly object _gate = new();
    private int _generation;
    private int _pending;
    private int _sleeping;
    private bool _disposed;

    private void* _job;
    private delegate*<void*, int, int, int, void> _invoke;
    private int _count;
    private int _grain;
    private int _parts;                // parts of the current job, at most Threads
    private readonly int[] _claims;    // per part: the generation of the last job that claimed (or marked) it
    private ExceptionDispatchInfo? _failure;

    /// <summary>
    /// Most threads a pool may have: a few per processor is already past any gain, and every thread
    /// reserves a 4 MB stack.
    /// </summary>
    public static int MaxThreads { get; } = Math.Max(64, 4 * Environment.ProcessorCount);

    /// <summary>Creates a pool that runs jobs on <paramref name="threads"/> threads, the caller's included.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="threads"/> is not in [1, <see cref="MaxThreads"/>].</exception>
    public WorkerPool(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(threads, MaxThreads);
        Threads = threads;
        _claims = new int[threads];
        _workers = new Thread[threads - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            int worker = i + 1;
            // Kernels put per-row scratch on the stack; 4 MB covers the widest rows of real models.
            _workers[i] = new Thread(() => WorkerLoop(worker), maxStackSize: 4 << 20)
            {
                IsBackground = true,
                Name = $"Llama.Compiled worker {worker}",
            };
            _workers[i].Start();
        }
    }

    /// <summary>Threads that run a job, the caller's included.</summary>
    public int Threads { get; }

    /// <summary>
    /// Runs <paramref name="job"/> over items [0, <paramref name="count"/>) split into one range per
    /// thread, each a multiple of <paramref name="grain"/> items (except the last), and returns when all
    /// ranges are done. Not reentrant: one job at a time per pool.
    /// </summary>
    // Every method a job passes through is compiled fully optimized at its first call, as the kernels are.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void For<TJob>(ref TJob job, int count, int grain) where TJob : struct, IParallelJob
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfLessThan(grain, 1);
        int parts = Math.Min(Threads, (int)(((long)count + grain - 1) / grain));
        if (parts <= 1)
        {
            job.Execute(0, count, 0);
            return;
        }

        // Parts this job does not have are marked as claimed by it, so that a worker cannot take one (see
        // TryClaim). The marks are written before the generation is published, like the job's fields.
        int generation = _generation + 1;
        for (int part = parts; part < Threads; part++)
            Volatile.Write(ref _claims[part], generation);

        // The job stays on this stack frame until every part has finished with it.
        TJob local = job;
        _job = Unsafe.AsPointer(ref local);
        _invoke = &Invoke<TJob>;
        _count = count;
        _grain = grain;
        _parts = parts;
        _failure = null;
        Volatile.Write(ref _pending, parts - 1);
        Interlocked.Increment(ref _generation); // only this thread (For is not reentrant) and Dispose write it
        if (Volatile.Read(ref _sleeping) > 0)
        {
            lock (_gate)
                Monitor.PulseAll(_gate);
        }

        // The job lives in this frame: even when this thread's own part throws, every other part must finish
        // (or be claimed here) before For returns, so the failure is kept and thrown after the wait, as a worker's is.
        try
        {
            RunPart(0);
        }
        catch (Exception e)
        {
            _failure ??= ExceptionDispatchInfo.Capture(e);
        }
        // A worker that has not started its part yet (asleep, or its core taken by another process) would
        // make this thread wait; run such parts here instead. Whoever claims a part first runs it.
        for (int part = 1; part < parts; part++)
        {
            if (TryClaim(part, generation))
                RunClaimedPart(part);
        }
        var spin = new SpinWait();
        while (Volatile.Read(ref _pending) > 0)
            spin.SpinOnce(sleep1Threshold: -1);
        _job = null;
        _failure?.Throw();
    }

    /// <summary>Stops the workers.</summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        _disposed = true;
        Interlocked.Increment(ref _generation);
        lock (_gate)
            Monitor.PulseAll(_gate);
        foreach (Thread worker in _workers)
            worker.Join();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Invoke<TJob>(void* job, int start, int end, int worker) where TJob : struct, IParallelJob =>
        Unsafe.AsRef<TJob>(job).Execute(start, end, worker);

    /// <summary>Range <paramref name="part"/> of the job's parts: equal shares rounded to the grain.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RunPart(int part)
    {
        int blocks = (_count + _grain - 1) / _grain;
        int start = Math.Min(_count, (int)((long)blocks * part / _parts) * _grain);
        int end = Math.Min(_count, (int)((long)blocks * (part + 1) / _parts) * _grain);
        if (start < end)
            _invoke(_job, start, end, part);
    }

    /// <summary>
    /// Claims <paramref name="part"/> of job <paramref name="generation"/>. A claim records the generation, and
    /// generations only grow, so a claim succeeds only while the part's last claim is older than this job.
    /// Every part of a job is claimed (or, for parts the job does not have, marked) with its generation before
    /// the job ends, so a worker that read the generation of a job that has since finished — it was
    /// descheduled between reading it and claiming — finds every part claimed at or after that generation
    /// and runs nothing. (Comparing for inequality instead let such a worker take a part of whatever job
    /// the fields held by then: it ran a part twice, ran a null job, or ran on a job struct whose stack
    /// frame had returned.)
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private bool TryClaim(int part, int generation)
    {
        int previous = Volatile.Read(ref _claims[part]);
        // Generations wrap after 2^32 jobs: compare by difference.
        return previous - generation < 0 && Interlocked.CompareExchange(ref _claims[part], generation, previous) == previous;
    }

    /// <summary>Runs a claimed part (the job's scratch is per part, so whichever thread runs it may use it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RunClaimedPart(int part)
    {
        try
        {
            RunPart(part);
        }
        catch (Exception e)
        {
            _failure ??= ExceptionDispatchInfo.Capture(e);
        }
        Interlocked.Decrement(ref _pending);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void WorkerLoop(int worker)
    {
        int seen = 0;
        while (true)
        {
            long spinUntil = Stopwatch.GetTimestamp() + s_spinTicks;
            for (int spins = 0; Volatile.Read(ref _generation) == seen; spins++)
            {
                Thread.SpinWait(1);
                if ((spins & 63) == 0 && Stopwatch.GetTimestamp() > spinUntil)
                    break;
            }
            if (Volatile.Read(ref _generation) == seen)
            {
                lock (_gate)
                {
                    Interlocked.Increment(ref _sleeping);
                    while (Volatile.Read(ref _generation) == seen)
                        Monitor.Wait(_gate);
                    Interlocked.Decrement(ref _sleeping);
                }
            }
            seen = Volatile.Read(ref _generation);
            if (_disposed)
                return;
            if (worker < Volatile.Read(ref _parts) && TryClaim(worker, seen))
                RunClaimedPart(worker);
        }
    }
}
