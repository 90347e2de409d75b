using System;
using System.Threading;
using Xunit;
using Xunit.Sdk;

namespace Llama.Compiled.Tests;

/// <summary>
/// The meter itself: it sees the smallest allocation per operation made on another thread (which the calling
/// thread's counter, all the meter read before, does not), and it passes a window that allocates nothing.
/// </summary>
[Collection(SerialReliabilityCollection.Name)]
public sealed class AllocationMeterTests : IDisposable
{
    private static object? s_kept;

    // A worker thread that allocates one smallest object each time it is released: the caller's thread allocates nothing.
    private readonly SemaphoreSlim _go = new(0), _done = new(0);
    private readonly Thread _worker;
    private volatile bool _stop;

    public AllocationMeterTests()
    {
        _worker = new Thread(() =>
        {
            while (true)
            {
                _go.Wait();
                if (_stop)
                    return;
                s_kept = new object();
                _done.Release();
            }
        }) { IsBackground = true };
        _worker.Start();
        OnWorker(); // warm-up: the first Wait/Release may allocate their wait objects
    }

    public void Dispose()
    {
        _stop = true;
        _go.Release();
        _worker.Join();
        _go.Dispose();
        _done.Dispose();
    }

    private void OnWorker()
    {
        _go.Release();
        _done.Wait();
    }

    [Fact]
    public void AnAllocationOnAnotherThreadFails()
    {
        // What the meter used to count, this thread's bytes, sees nothing of the worker's allocation.
        long before = GC.GetAllocatedBytesForCurrentThread();
        OnWorker();
        OnWorker();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);

        var e = Assert.Throws<FailException>(() => AllocationMeter.AssertSomeWindowAllocatesNothing(100, () =>
        {
            for (int i = 0; i < 100; i++)
                OnWorker();
        }));
        Assert.Contains("every one of 5 windows of 100 operations allocated", e.Message);
        Assert.NotNull(s_kept);
    }

    [Fact]
    public void AWindowThatAllocatesNothingPasses()
    {
        int sum = 0;
        long[] windows = AllocationMeter.AssertSomeWindowAllocatesNothing(1000, () =>
        {
            for (int i = 0; i < 1000; i++)
                sum += i;
        });
        Assert.True(windows[^1] < 1000 * AllocationMeter.SmallestObject);
        Assert.True(sum > 0);
    }
}
