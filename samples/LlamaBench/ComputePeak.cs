using System;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using System.Threading;

namespace LlamaBench;

/// <summary>
/// The arithmetic limits a prefill meets: n threads each run a loop of independent multiply-add chains held in registers
/// (enough chains to cover the instruction's latency on every port that executes it), best of several passes. Counted in
/// multiply-adds per second: one F32 lane of an FMA, or one u8×s8 product summed into an int32 lane.
/// </summary>
/// <remarks>
/// Each thread's rate is its work over its own CPU time (Linux: CLOCK_THREAD_CPUTIME_ID; elsewhere wall time), so that
/// other processes sharing the cores do not lower the peak: it is what the cores do while they run these threads, on a
/// machine where a timed wall-clock pass is rarely undisturbed. The n-thread peak is the sum of the threads' rates, which
/// running concurrently on n cores share if they share a core's ports (SMT).
/// </remarks>
internal static unsafe partial class ComputePeak
{
    /// <summary>Independent accumulators per loop: FMA and vpdpbusd have a latency of 4-5 cycles on two ports, so at least 10 are in flight.</summary>
    private const int Chains = 12;

    /// <summary>
    /// The maddubs path's accumulators: only the final add (1 cycle) depends on an accumulator, so fewer chains cover its latency,
    /// and 8 leave registers for the weights, products and the ones vector on CPUs without AVX-512's 32 vector registers.
    /// </summary>
    private const int MaddubsChains = 8;

    /// <summary>Bytes the maddubs path loads its u8 operands from (L1-resident): loads that vary per iteration cannot be hoisted out of the loop.</summary>
    private const int Int8BufferBytes = 16 * MaddubsChains * 32;

    /// <summary>Width in bits of the F32 probe's vectors: 512 with AVX-512, 256 with AVX2 + FMA, 0 when neither runs (no probe).</summary>
    public static int FmaBits => Avx512F.IsSupported ? 512 : Fma.IsSupported ? 256 : 0;

    /// <summary>The int8 probe's instructions.</summary>
    public static string Int8Path => AvxVnni.IsSupported ? "AVX-VNNI vpdpbusd 256-bit"
        : Avx2.IsSupported ? "AVX2 vpmaddubsw+vpmaddwd 256-bit" : "none";

    /// <summary>F32 multiply-adds per second on <paramref name="threads"/> threads (0 when the CPU has no FMA).</summary>
    public static double FmaPerSecond(int threads) => FmaBits switch
    {
        512 => Measure(threads, &Fma512, Chains * Vector512<float>.Count),
        256 => Measure(threads, &Fma256, Chains * Vector256<float>.Count),
        _ => 0,
    };

    /// <summary>u8×s8 multiply-adds per second on <paramref name="threads"/> threads (0 without AVX2).</summary>
    public static double Int8PerSecond(int threads) =>
        AvxVnni.IsSupported ? Measure(threads, &Vnni256, Chains * Vector256<byte>.Count)
        : Avx2.IsSupported ? Measure(threads, &Maddubs256, MaddubsChains * Vector256<byte>.Count)
        : 0;

    /// <summary>
    /// Runs <paramref name="kernel"/> on each thread for about 0.1 s of CPU time per pass and returns the best pass's
    /// multiply-adds per second.
    /// </summary>
    private static double Measure(int threads, delegate*<long, byte*, float> kernel, int multiplyAddsPerIteration, int passes = 5)
    {
        byte* bytes = (byte*)NativeMemory.AlignedAlloc(Int8BufferBytes, 64);
        try
        {
            new Span<byte>(bytes, Int8BufferBytes).Fill(3);
            // Calibrate on this thread: iterations for a 0.1 s pass (the first call also compiles the kernel).
            long probe = 1 << 16;
            double probeSeconds;
            do
            {
                probe *= 2;
                double t0 = ThreadSeconds();
                _ = kernel(probe, bytes);
                probeSeconds = ThreadSeconds() - t0;
            }
            while (probeSeconds < 0.01);
            long iterations = (long)(probe * 0.1 / probeSeconds);

            double best = 0;
            float sink = 0;
            for (int pass = 0; pass < passes; pass++)
            {
                var results = new float[threads];
                var seconds = new double[threads];
                var workers = new Thread[threads];
                using var start = new Barrier(threads);
                for (int t = 0; t < threads; t++)
                {
                    int id = t;
                    workers[t] = new Thread(() =>
                    {
                        start.SignalAndWait();
                        double t1 = ThreadSeconds();
                        results[id] = kernel(iterations, bytes);
                        seconds[id] = ThreadSeconds() - t1;
                    });
                    workers[t].Start();
                }
                foreach (Thread w in workers)
                    w.Join();
                double rate = 0;
                for (int t = 0; t < threads; t++)
                {
                    sink += results[t];
                    rate += (double)iterations * multiplyAddsPerIteration / seconds[t];
                }
                best = Math.Max(best, rate);
            }
            GC.KeepAlive(sink);
            return best;
        }
        finally
        {
            NativeMemory.AlignedFree(bytes);
        }
    }

    /// <summary>The calling thread's CPU time in seconds on Linux; elsewhere the wall clock's.</summary>
    private static double ThreadSeconds()
    {
        if (OperatingSystem.IsLinux())
        {
            try
            {
                if (ClockGetTime(ClockThreadCpuTime, out TimeSpec time) == 0)
                    return time.Seconds + time.Nanoseconds * 1e-9;
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                // A C library the loader cannot find by the name "libc": the wall clock then.
            }
        }
        return Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency;
    }

    private const int ClockThreadCpuTime = 3; // CLOCK_THREAD_CPUTIME_ID

    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, out TimeSpec time);

    // The F32 chains converge to 1 (a = 0.999 a + 0.001): no overflow, no denormals. Each chain starts elsewhere, so that no
    // two are the same computation.

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Fma512(long iterations, byte* unused)
    {
        Vector512<float> m = Vector512.Create(0.999f), c = Vector512.Create(0.001f);
        Vector512<float> a0 = Vector512.Create(0.00f), a1 = Vector512.Create(0.01f), a2 = Vector512.Create(0.02f), a3 = Vector512.Create(0.03f);
        Vector512<float> a4 = Vector512.Create(0.04f), a5 = Vector512.Create(0.05f), a6 = Vector512.Create(0.06f), a7 = Vector512.Create(0.07f);
        Vector512<float> a8 = Vector512.Create(0.08f), a9 = Vector512.Create(0.09f), a10 = Vector512.Create(0.10f), a11 = Vector512.Create(0.11f);
        for (long i = 0; i < iterations; i++)
        {
            a0 = Avx512F.FusedMultiplyAdd(a0, m, c);
            a1 = Avx512F.FusedMultiplyAdd(a1, m, c);
            a2 = Avx512F.FusedMultiplyAdd(a2, m, c);
            a3 = Avx512F.FusedMultiplyAdd(a3, m, c);
            a4 = Avx512F.FusedMultiplyAdd(a4, m, c);
            a5 = Avx512F.FusedMultiplyAdd(a5, m, c);
            a6 = Avx512F.FusedMultiplyAdd(a6, m, c);
            a7 = Avx512F.FusedMultiplyAdd(a7, m, c);
            a8 = Avx512F.FusedMultiplyAdd(a8, m, c);
            a9 = Avx512F.FusedMultiplyAdd(a9, m, c);
            a10 = Avx512F.FusedMultiplyAdd(a10, m, c);
            a11 = Avx512F.FusedMultiplyAdd(a11, m, c);
        }
        return Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Fma256(long iterations, byte* unused)
    {
        Vector256<float> m = Vector256.Create(0.999f), c = Vector256.Create(0.001f);
        Vector256<float> a0 = Vector256.Create(0.00f), a1 = Vector256.Create(0.01f), a2 = Vector256.Create(0.02f), a3 = Vector256.Create(0.03f);
        Vector256<float> a4 = Vector256.Create(0.04f), a5 = Vector256.Create(0.05f), a6 = Vector256.Create(0.06f), a7 = Vector256.Create(0.07f);
        Vector256<float> a8 = Vector256.Create(0.08f), a9 = Vector256.Create(0.09f), a10 = Vector256.Create(0.10f), a11 = Vector256.Create(0.11f);
        for (long i = 0; i < iterations; i++)
        {
            a0 = Fma.MultiplyAdd(a0, m, c);
            a1 = Fma.MultiplyAdd(a1, m, c);
            a2 = Fma.MultiplyAdd(a2, m, c);
            a3 = Fma.MultiplyAdd(a3, m, c);
            a4 = Fma.MultiplyAdd(a4, m, c);
            a5 = Fma.MultiplyAdd(a5, m, c);
            a6 = Fma.MultiplyAdd(a6, m, c);
            a7 = Fma.MultiplyAdd(a7, m, c);
            a8 = Fma.MultiplyAdd(a8, m, c);
            a9 = Fma.MultiplyAdd(a9, m, c);
            a10 = Fma.MultiplyAdd(a10, m, c);
            a11 = Fma.MultiplyAdd(a11, m, c);
        }
        return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    // The int8 chains wrap around int32 harmlessly (vpdpbusd does not saturate); only their time counts.

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Vnni256(long iterations, byte* unused)
    {
        Vector256<byte> u = Vector256.Create((byte)3);
        Vector256<sbyte> s = Vector256.Create((sbyte)-2);
        Vector256<int> a0 = Vector256.Create(0), a1 = Vector256.Create(1), a2 = Vector256.Create(2), a3 = Vector256.Create(3);
        Vector256<int> a4 = Vector256.Create(4), a5 = Vector256.Create(5), a6 = Vector256.Create(6), a7 = Vector256.Create(7);
        Vector256<int> a8 = Vector256.Create(8), a9 = Vector256.Create(9), a10 = Vector256.Create(10), a11 = Vector256.Create(11);
        for (long i = 0; i < iterations; i++)
        {
            a0 = AvxVnni.MultiplyWideningAndAdd(a0, u, s);
            a1 = AvxVnni.MultiplyWideningAndAdd(a1, u, s);
            a2 = AvxVnni.MultiplyWideningAndAdd(a2, u, s);
            a3 = AvxVnni.MultiplyWideningAndAdd(a3, u, s);
            a4 = AvxVnni.MultiplyWideningAndAdd(a4, u, s);
            a5 = AvxVnni.MultiplyWideningAndAdd(a5, u, s);
            a6 = AvxVnni.MultiplyWideningAndAdd(a6, u, s);
            a7 = AvxVnni.MultiplyWideningAndAdd(a7, u, s);
            a8 = AvxVnni.MultiplyWideningAndAdd(a8, u, s);
            a9 = AvxVnni.MultiplyWideningAndAdd(a9, u, s);
            a10 = AvxVnni.MultiplyWideningAndAdd(a10, u, s);
            a11 = AvxVnni.MultiplyWideningAndAdd(a11, u, s);
        }
        return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
    }

    /// <summary>
    /// The int8 dot product without VNNI, as the kernels do it: u8×s8 pairs summed to int16 (vpmaddubsw), int16 pairs to int32
    /// (vpmaddwd with ones), added to the accumulator. The u8 operands are loaded, as weights are: a register operand would let
    /// the JIT hoist both products out of the loop.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Maddubs256(long iterations, byte* bytes)
    {
        Vector256<sbyte> s = Vector256.Create((sbyte)-2);
        Vector256<short> ones = Vector256.Create((short)1);
        Vector256<int> a0 = Vector256.Create(0), a1 = Vector256.Create(1), a2 = Vector256.Create(2), a3 = Vector256.Create(3);
        Vector256<int> a4 = Vector256.Create(4), a5 = Vector256.Create(5), a6 = Vector256.Create(6), a7 = Vector256.Create(7);
        for (long i = 0; i < iterations; i++)
        {
            byte* u = bytes + (i & 15) * (MaddubsChains * 32);
            a0 = Avx2.Add(a0, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx.LoadAlignedVector256(u), s), ones));
            a1 = Avx2.Add(a1, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx.LoadAlignedVector256(u + 32), s), ones));
            a2 = Avx2.Add(a2, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx.LoadAlignedVector256(u + 64), s), ones));
            a3 = Avx2.Add(a3, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx.LoadAlignedVector256(u + 96), s), ones));
            a4 = Avx2.Add(a4, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx.LoadAlignedVector256(u + 128), s), ones));
            a5 = Avx2.Add(a5, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx.LoadAlignedVector256(u + 160), s), ones));
            a6 = Avx2.Add(a6, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx.LoadAlignedVector256(u + 192), s), ones));
            a7 = Avx2.Add(a7, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx.LoadAlignedVector256(u + 224), s), ones));
        }
        return Vector256.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7);
    }
}
