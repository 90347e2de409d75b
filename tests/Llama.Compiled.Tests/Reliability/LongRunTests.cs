using System;
using System.IO;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Tests;

/// <summary>
/// Long runs: 10,000 tokens without managed or native growth, no allocation per token, and KV state
/// that round-trips exactly and refuses another compiled shape.
/// </summary>
[Collection(SerialReliabilityCollection.Name)]
public sealed class LongRunTests(ITestOutputHelper output)
{
    private const int Max = Stories260K.MaxContext;

    /// <summary>Greedy decoding for <paramref name="steps"/> tokens, resetting at the context limit; returns a checksum of the tokens.</summary>
    private static long Decode(Stories260K.Session session, int steps, ref int token)
    {
        long checksum = 0;
        for (int i = 0; i < steps; i++)
        {
            if (session.Position == Max)
                session.Reset();
            token = Reliability.ArgMax(session.Forward(token));
            checksum = checksum * 31 + token;
        }
        return checksum;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void DecodeLoopAllocatesNothing(int threads)
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession(new SessionOptions { Threads = threads });
        int token = Stories260K.BosTokenId;
        Decode(session, 600, ref token); // warm-up: JIT tiers, the worker pool's threads

        long[] allocated = AllocationMeter.AssertSomeWindowAllocatesNothing(2000, () => Decode(session, 2000, ref token));
        output.WriteLine($"Threads = {threads}: bytes allocated in the process over windows of 2000 Forward + argmax steps: {string.Join(", ", allocated)}");
    }

    [Fact]
    public void PrefillAndShiftAllocateNothing()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession(new SessionOptions { Threads = 2, Overflow = ContextOverflow.Shift, KeepTokens = 1 });
        int[] prompt = Reliability.Prompt(1, 150);
        for (int i = 0; i < 10; i++)
            session.Forward(prompt);

        // Operations: the 40 × 150 tokens, each through every layer on both threads.
        long[] allocated = AllocationMeter.AssertSomeWindowAllocatesNothing(40 * 150, () =>
        {
            for (int i = 0; i < 40; i++)
                session.Forward(prompt); // prefill chunks, and a context shift every few calls
        });
        output.WriteLine($"bytes allocated in the process over windows of 40 prefills of 150 tokens with shifts: {string.Join(", ", allocated)}");
    }

    [Fact]
    public void SampledDecodeLoopAllocatesNothing()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession(new SessionOptions { Threads = 1 });
        var sampler = new Sampler(Stories260K.VocabSize, new SamplingOptions { Temperature = 0.9f, TopK = 40, TopP = 0.9f, MinP = 0.05f, RepetitionPenalty = 1.1f, Seed = 3 });
        int[] history = new int[Max];
        int token = Stories260K.BosTokenId;
        void Run(int steps)
        {
            for (int i = 0; i < steps; i++)
            {
                if (session.Position == Max)
                    session.Reset();
                history[session.Position] = token;
                ReadOnlySpan<float> logits = session.Forward(token);
                token = sampler.Sample(logits, history.AsSpan(0, session.Position));
            }
        }
        Run(600);
        long[] allocated = AllocationMeter.AssertSomeWindowAllocatesNothing(2000, () => Run(2000));
        output.WriteLine($"bytes allocated in the process over windows of 2000 Forward + Sample steps: {string.Join(", ", allocated)}");
    }

    [Fact]
    public void TenThousandTokensDoNotGrowManagedOrNativeMemory()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession(new SessionOptions { Threads = 2 });
        int token = Stories260K.BosTokenId;
        Decode(session, 2 * Max, ref token); // warm-up: a full context and a reset

        // 10,000 tokens in 5 rounds; growth in more than one round is a leak (see GrowthPerRound). A leak of one
        // 24-byte object per token is 48 KB a round.
        long checksum = 0;
        (long[] managed, long[] resident) = GrowthPerRound(5, () => checksum = checksum * 31 + Decode(session, 2000, ref token));
        output.WriteLine($"10,000 tokens (checksum {checksum}) in 5 rounds: managed growth {string.Join(", ", managed)} B, resident {string.Join(", ", Array.ConvertAll(resident, r => r / 1024))} KB");
        Assert.True(SecondLargest(managed) < 24 * 1024, $"the managed heap grew in more than one round of 2000 tokens: {string.Join(", ", managed)} bytes");
        Assert.True(SecondLargest(resident) < 1 << 20, $"the resident set grew in more than one round of 2000 tokens: {string.Join(", ", Array.ConvertAll(resident, r => r / 1024))} KB");
    }

    [Fact]
    public void ManySessionsCreatedAndDisposedDoNotLeak()
    {
        // Sessions own worker threads and a KV cache; creating and disposing them must return both.
        // A leak of anything a session owns grows every round (a KV cache alone is ~640 KB; 200 B a session is
        // 30 KB a round).
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        void Cycle(int count)
        {
            for (int i = 0; i < count; i++)
            {
                using var s = model.CreateSession(new SessionOptions { Threads = 2 });
                s.Forward([1, 403, 407]);
            }
        }
        const int Rounds = 5, PerRound = 150;
        Cycle(50);
        int threadsBefore = CurrentThreadCount(); // its first call initializes caches of System.Diagnostics.Process
        (long[] managed, long[] resident) = GrowthPerRound(Rounds, () => Cycle(PerRound));
        int threadsAfter = CurrentThreadCount();
        output.WriteLine($"{Rounds} rounds of {PerRound} sessions: managed growth per round {string.Join(", ", managed)} B; " +
                         $"resident {string.Join(", ", Array.ConvertAll(resident, r => r / 1024))} KB; threads {threadsBefore} -> {threadsAfter}");
        Assert.True(SecondLargest(managed) < 24 * 1024, $"the managed heap grew in more than one round of {PerRound} sessions: {string.Join(", ", managed)} bytes");
        Assert.True(SecondLargest(resident) < 4 << 20, $"the resident set grew in more than one round of {PerRound} sessions: {string.Join(", ", Array.ConvertAll(resident, r => r / 1024))} KB");
        Assert.True(threadsAfter <= threadsBefore + 4, $"threads {threadsBefore} -> {threadsAfter}: disposed sessions left workers running");
    }

    /// <summary>
    /// Runs <paramref name="round"/> <paramref name="rounds"/> times and returns how much the settled managed heap and
    /// the resident set grew in each round. A leak grows (nearly) every round; callers bound the second-largest
    /// round, so one step is tolerated and a trend is not.
    /// </summary>
    /// <remarks>
    /// One window, as these tests had, failed on an engineer's machine ("managed heap grew by ~400 KB") and fails
    /// here too, in about one run in three of either test run alone: the process's managed heap takes a one-time
    /// step of 267-290 KB at a varying moment in the first seconds (gen1's ~700 KB is folded into gen2, which grows
    /// by ~1 MB), while a session decodes as well as while sessions are created. It is not the code under test: it
    /// happens with DOTNET_TieredCompilation=0 too, not when 750 bare threads are started and joined instead, never
    /// twice in a process, and every other round grows by -10 KB to +9 KB (multiples of 8 KB: allocation-context
    /// granularity). The managed heap is the whole process's, test host included, so such one-time growth of the
    /// host's own state lands in whichever window is open.
    /// </remarks>
    private static (long[] Managed, long[] Resident) GrowthPerRound(int rounds, Action round)
    {
        long[] managed = new long[rounds], resident = new long[rounds];
        long managedBefore = Reliability.SettledManagedBytes();
        long residentBefore = Reliability.ResidentBytes();
        for (int i = 0; i < rounds; i++)
        {
            round();
            long managedNow = Reliability.SettledManagedBytes();
            long residentNow = Reliability.ResidentBytes();
            managed[i] = managedNow - managedBefore;
            resident[i] = residentNow - residentBefore;
            (managedBefore, residentBefore) = (managedNow, residentNow);
        }
        return (managed, resident);
    }

    private static long SecondLargest(long[] values)
    {
        long[] sorted = (long[])values.Clone();
        Array.Sort(sorted);
        return sorted[^2];
    }

    private static int CurrentThreadCount()
    {
        using var process = System.Diagnostics.Process.GetCurrentProcess();
        return process.Threads.Count;
    }

    [Fact]
    public void LoadingAndDisposingModelsRepeatedlyDoesNotLeak()
    {
        // Every Load maps the file; every Dispose must unmap it (native memory and file handles).
        void Cycle(int count)
        {
            for (int i = 0; i < count; i++)
            {
                using var m = Stories260K.Load(TestPaths.Stories260KHf);
                using var s = m.CreateSession(new SessionOptions { Threads = 1 });
                s.Forward(1);
            }
        }
        Cycle(200); // warm-up: the GC and the native allocator settle in the first hundred loads
        using (var loaded = Stories260K.Load(TestPaths.Stories260KHf))
            Assert.True(!File.Exists("/proc/self/maps") || MappingsOf(TestPaths.Stories260KHf) > 0, "the measurement does not see the mapping of a loaded model");
        int mapsBefore = MappingsOf(TestPaths.Stories260KHf);
        Reliability.SettledManagedBytes();
        long residentBefore = Reliability.ResidentBytes();
        Cycle(300);
        int mapsAfter = MappingsOf(TestPaths.Stories260KHf);
        Reliability.SettledManagedBytes();
        long residentAfter = Reliability.ResidentBytes();
        output.WriteLine($"300 loads: mappings of the weights {mapsBefore} -> {mapsAfter}, resident {(residentAfter - residentBefore) / 1024:+#;-#;0} KB");
        Assert.Equal(mapsBefore, mapsAfter);
        Assert.True(residentAfter - residentBefore < 16 << 20, $"resident set grew by {(residentAfter - residentBefore) / 1024} KB");
    }

    /// <summary>Lines of /proc/self/maps that map one of the files in <paramref name="folder"/> (0 where there is no /proc).</summary>
    /// <remarks>
    /// The kernel names a mapped file by its real path: every symbolic link on the way resolved (a clone whose
    /// <c>../shared</c> is a link maps <c>/elsewhere/models/...</c>). So each file's path is resolved as realpath(3)
    /// does and compared whole with the line's path field.
    /// </remarks>
    private static int MappingsOf(string folder)
    {
        if (!File.Exists("/proc/self/maps"))
            return 0;
        var files = new System.Collections.Generic.HashSet<string>(StringComparer.Ordinal);
        foreach (string file in Directory.EnumerateFiles(folder))
            files.Add(RealPath(file));
        int count = 0;
        foreach (string line in File.ReadLines("/proc/self/maps"))
        {
            // address perms offset dev inode path: only the path has a '/'.
            int slash = line.IndexOf('/');
            if (slash >= 0 && files.Contains(line[slash..]))
                count++;
        }
        return count;
    }

    /// <summary>The path with every symbolic link in it resolved, as realpath(3) returns it.</summary>
    internal static string RealPath(string path)
    {
        IntPtr resolved = realpath(Path.GetFullPath(path), IntPtr.Zero);
        if (resolved == IntPtr.Zero)
            throw new IOException($"realpath({path}) failed: errno {System.Runtime.InteropServices.Marshal.GetLastPInvokeError()}");
        try
        {
            return System.Runtime.InteropServices.Marshal.PtrToStringUTF8(resolved)!;
        }
        finally
        {
            free(resolved);
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern IntPtr realpath([System.Runtime.InteropServices.MarshalAs(System.Runtime.InteropServices.UnmanagedType.LPUTF8Str)] string path, IntPtr resolved);

    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern void free(IntPtr pointer);

    [Fact]
    public void SaveRestoreRoundTripsExactlyAcrossSessionsAndShift()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var a = model.CreateSession(new SessionOptions { Overflow = ContextOverflow.Shift, KeepTokens = 1 });
        int token = 1;
        for (int i = 0; i < Max + 100; i++) // past a shift
            token = Reliability.ArgMax(a.Forward(token));
        var saved = new MemoryStream();
        a.Save(saved);
        int position = a.Position;

        using var b = model.CreateSession(new SessionOptions { Threads = 1, Overflow = ContextOverflow.Shift, KeepTokens = 1 });
        saved.Position = 0;
        b.Restore(saved);
        Assert.Equal(position, b.Position);
        Assert.Equal(a.Logits.ToArray(), b.Logits.ToArray());
        int ta = token, tb = token;
        for (int i = 0; i < 200; i++) // through another shift
        {
            float[] la = a.Forward(ta).ToArray(), lb = b.Forward(tb).ToArray();
            Assert.Equal(la, lb);
            ta = Reliability.ArgMax(la);
            tb = Reliability.ArgMax(lb);
        }
    }

    [Fact]
    public void RestoreRejectsTheStateOfAnotherCompiledShape()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var shortModel = Stories260KShort.Load(TestPaths.Stories260KHf);
        Assert.Equal(256, Stories260KShort.MaxContext);
        using var full = model.CreateSession();
        using var small = shortModel.CreateSession();
        full.Forward([1, 403, 407]);
        small.Forward([1, 403, 407, 408]);
        float[] smallLogits = small.Logits.ToArray();

        var fromFull = new MemoryStream();
        full.Save(fromFull);
        fromFull.Position = 0;
        var e = Assert.Throws<InvalidDataException>(() => small.Restore(fromFull));
        Assert.Contains("MaxContext", e.Message);
        Assert.Contains("512", e.Message);
        Assert.Contains("256", e.Message);
        // A rejected restore leaves the session empty (documented: "the session is then reset"), never half-written.
        Assert.Equal(0, small.Position);
        small.Forward([1, 403, 407, 408]);
        Assert.Equal(smallLogits, small.Logits.ToArray());

        var fromSmall = new MemoryStream();
        small.Save(fromSmall);
        fromSmall.Position = 0;
        Assert.Throws<InvalidDataException>(() => full.Restore(fromSmall));
        Assert.Equal(0, full.Position);
    }

    [Fact]
    public void RestoreRejectsCorruptedPositions()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession();
        session.Forward([1, 403, 407]);
        var saved = new MemoryStream();
        session.Save(saved);
        foreach (int position in new[] { -1, Max + 1, int.MaxValue, int.MinValue, 4 /* more than was saved: truncated */ })
        {
            byte[] bytes = saved.ToArray();
            BitConverter.GetBytes(position).CopyTo(bytes, 10 * sizeof(int));
            Assert.Throws<InvalidDataException>(() => session.Restore(new MemoryStream(bytes)));
            Assert.Equal(0, session.Position);
        }
    }
}
