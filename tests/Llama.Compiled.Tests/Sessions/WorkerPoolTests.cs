using System;
using System.Runtime.CompilerServices;
using System.Threading;
using Xunit;
using Llama.Compiled.CompilerServices;

namespace Llama.Compiled.Tests;

/// <summary>
/// The pool's contract, checked directly: every item of every job runs exactly once, inside a range on the
/// grain, with a worker index below Threads that no other range running at the same time uses.
/// </summary>
public sealed class WorkerPoolTests
{
    private sealed class Tally(int count, int threads)
    {
        public readonly int[] Runs = new int[count];      // per item: how often it ran in this job
        public readonly int[] Busy = new int[threads];    // per worker index: ranges running right now
        public int Violations;
    }

    private readonly struct CountingJob(Tally tally, int grain) : IParallelJob
    {
        public void Execute(int start, int end, int worker)
        {
            if (worker < 0 || worker >= tally.Busy.Length || start % grain != 0 || Interlocked.Increment(ref tally.Busy[worker]) != 1)
                Interlocked.Increment(ref tally.Violations);
            for (int i = start; i < end; i++)
                Interlocked.Increment(ref tally.Runs[i]);
            if (worker >= 0 && worker < tally.Busy.Length)
                Interlocked.Decrement(ref tally.Busy[worker]);
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    public void EveryItemRunsExactlyOnceAcrossThousandsOfBackToBackJobs(int threads)
    {
        using var pool = new WorkerPool(threads);
        var random = new Random(threads);
        for (int job = 0; job < 5000; job++)
        {
            // Sizes from one grain to many ranges per thread, and pauses that let workers fall asleep,
            // so that late wake-ups meet the next job.
            int grain = random.Next(1, 20);
            int count = random.Next(1, 3000);
            var tally = new Tally(count, threads);
            var work = new CountingJob(tally, grain);
            pool.For(ref work, count, grain);
            Assert.Equal(0, tally.Violations);
            for (int i = 0; i < count; i++)
                Assert.True(tally.Runs[i] == 1, $"job {job} ({count} items, grain {grain}): item {i} ran {tally.Runs[i]} times");
            if (job % 500 == 0)
                Thread.Sleep(3);
        }
    }

    /// <summary>
    /// Hundreds of thousands of jobs of a few items each, on more threads than cores: a worker is often
    /// descheduled between reading a job's generation and claiming its part, and wakes up jobs later. With the
    /// claim compared for inequality such a worker took a part of a later job (items ran twice), of no job
    /// (a null job: NullReferenceException), or of a job whose stack frame had returned — the fatal error of
    /// issue 17. Before the fix this test failed at 4 and 8 threads in every run tried (within the first 90,000
    /// jobs), and at 2 threads in some runs.
    /// </summary>
    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(8)]
    public void AWorkerDescheduledBetweenJobsNeverRunsAPartOfAnotherJob(int threads)
    {
        using var pool = new WorkerPool(threads);
        var random = new Random(threads);
        int[] runs = new int[3 * threads];
        for (int job = 0; job < 300_000; job++)
        {
            // One item per part: 1 to 3·threads items make jobs of every part count, so parts a job lacks meet late workers.
            int count = random.Next(1, runs.Length + 1);
            Array.Clear(runs);
            var work = new ItemCountingJob(runs);
            pool.For(ref work, count, grain: 1);
            for (int i = 0; i < count; i++)
            {
                if (runs[i] != 1)
                    Assert.Fail($"job {job} ({count} items on {threads} threads): item {i} ran {runs[i]} times");
            }
        }
    }

    private readonly struct ItemCountingJob(int[] runs) : IParallelJob
    {
        public void Execute(int start, int end, int worker)
        {
            for (int i = start; i < end; i++)
                Interlocked.Increment(ref runs[i]);
        }
    }

    /// <summary>Part 0 (the caller's) throws at once; part 1 takes 100 ms and then records that it finished.</summary>
    private readonly struct FirstPartThrowsJob(StrongBox<bool> finished) : IParallelJob
    {
        public void Execute(int start, int end, int worker)
        {
            if (start == 0)
                throw new InvalidOperationException("first part");
            Thread.Sleep(100);
            finished.Value = true;
        }
    }

    [Fact]
    public void AnExceptionInTheCallersRangeWaitsForTheOtherRanges()
    {
        using var pool = new WorkerPool(2);
        var finished = new StrongBox<bool>();
        var job = new FirstPartThrowsJob(finished);
        var e = Assert.Throws<InvalidOperationException>(() => pool.For(ref job, 2, 1));
        Assert.Equal("first part", e.Message);
        // For returned only after the other range had finished with the job (which lives in For's frame).
        Assert.True(finished.Value, "For returned while another range was still running");
    }

    [Fact]
    public void ANegativeCountOrAGrainBelowOneIsAnArgumentError()
    {
        using var pool = new WorkerPool(2);
        var tally = new Tally(10, 2);
        var work = new CountingJob(tally, 1);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.For(ref work, -1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.For(ref work, 10, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.For(ref work, 10, -3));
    }

    private readonly struct ThrowingJob(int failAt) : IParallelJob
    {
        public void Execute(int start, int end, int worker)
        {
            if (start <= failAt && failAt < end)
                throw new InvalidOperationException($"item {failAt}");
        }
    }

    [Fact]
    public void AnExceptionInAnyRangeReachesTheCallerAndThePoolKeepsWorking()
    {
        using var pool = new WorkerPool(2);
        var failing = new ThrowingJob(failAt: 999);
        var e = Assert.Throws<InvalidOperationException>(() => pool.For(ref failing, 1000, 1));
        Assert.Equal("item 999", e.Message);

        var tally = new Tally(100, 2);
        var work = new CountingJob(tally, 1);
        pool.For(ref work, 100, 1);
        Assert.All(tally.Runs, runs => Assert.Equal(1, runs));
    }
}
