using System;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Threading;

namespace LlamaBench;

/// <summary>
/// Memory read bandwidth, measured the way a decode step reads weights: each of n threads streams its own
/// contiguous slice of a buffer far larger than the caches, summing it with 256-bit vectors. Best of several
/// passes (on a shared machine the best pass is the least disturbed one).
/// </summary>
internal static unsafe class Bandwidth
{
    public static double MeasureGBps(int threads, long bytes = 1L << 30, int passes = 6)
    {
        long floats = bytes / sizeof(float);
        float* buffer = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
        try
        {
            // Touch every page so the passes measure memory, not page faults.
            new Span<float>(buffer, (int)Math.Min(floats, int.MaxValue)).Fill(1f);
            if (floats > int.MaxValue)
                new Span<float>(buffer + int.MaxValue, (int)(floats - int.MaxValue)).Fill(1f);

            double best = 0;
            float sink = 0;
            for (int pass = 0; pass < passes; pass++)
            {
                var partial = new float[threads];
                var workers = new Thread[threads];
                using var start = new Barrier(threads + 1);
                long slice = floats / threads / 32 * 32;
                for (int t = 0; t < threads; t++)
                {
                    int id = t;
                    workers[t] = new Thread(() =>
                    {
                        start.SignalAndWait();
                        partial[id] = Sum(buffer + id * slice, slice);
                    });
                    workers[t].Start();
                }
                long t0 = Stopwatch.GetTimestamp();
                start.SignalAndWait();
                foreach (Thread w in workers)
                    w.Join();
                double seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                foreach (float p in partial)
                    sink += p;
                best = Math.Max(best, slice * threads * (double)sizeof(float) / seconds / 1e9);
            }
            GC.KeepAlive(sink);
            return best;
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
    }

    private static float Sum(float* p, long count)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (long i = 0; i < count; i += 32)
        {
            a0 += Vector256.LoadAligned(p + i);
            a1 += Vector256.LoadAligned(p + i + 8);
            a2 += Vector256.LoadAligned(p + i + 16);
            a3 += Vector256.LoadAligned(p + i + 24);
        }
        return Vector256.Sum(a0 + a1 + a2 + a3);
    }
}
