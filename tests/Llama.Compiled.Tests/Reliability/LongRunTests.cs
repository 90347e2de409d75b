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

        long[] allocated = AllocationMeter.AssertSomeWindowAllocatesNothing(() => Decode(session, 2000, ref token));
        output.WriteLine($"Threads = {threads}: bytes allocated over windows of 2000 Forward + argmax steps: {string.Join(", ", allocated)}");
    }

    [Fact]
    public void PrefillAndShiftAllocateNothing()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession(new SessionOptions { Threads = 2, Overflow = ContextOverflow.Shift, KeepTokens = 1 });
        int[] prompt = Reliability.Prompt(1, 150);
        for (int i = 0; i < 10; i++)
            session.Forward(prompt);

        long[] allocated = AllocationMeter.AssertSomeWindowAllocatesNothing(() =>
        {
            for (int i = 0; i < 40; i++)
                session.Forward(prompt); // prefill chunks, and a context shift every few calls
        });
        output.WriteLine($"bytes allocated over windows of 40 prefills of 150 tokens with shifts: {string.Join(", ", allocated)}");
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
        long[] allocated = AllocationMeter.AssertSomeWindowAllocatesNothing(() => Run(2000));
        output.WriteLine($"bytes allocated over windows of 2000 Forward + Sample steps: {string.Join(", ", allocated)}");
    }

    [Fact]
    public void TenThousandTokensDoNotGrowManagedOrNativeMemory()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession(new SessionOptions { Threads = 2 });
        int token = Stories260K.BosTokenId;
        Decode(session, 2 * Max, ref token); // warm-up: a full context and a reset

        long managedBefore = Reliability.SettledManagedBytes();
        long residentBefore = Reliability.ResidentBytes();
        long checksum = Decode(session, 10_000, ref token);
        long residentAfter = Reliability.ResidentBytes();
        long managedAfter = Reliability.SettledManagedBytes();

        output.WriteLine($"10,000 tokens (checksum {checksum}): managed {managedBefore} -> {managedAfter} B ({managedAfter - managedBefore:+#;-#;0}), " +
                         $"resident {residentBefore / 1024} -> {residentAfter / 1024} KB ({(residentAfter - residentBefore) / 1024:+#;-#;0} KB)");
        Assert.True(managedAfter - managedBefore < 64 * 1024, $"managed heap grew by {managedAfter - managedBefore} bytes");
        Assert.True(residentAfter - residentBefore < 4 << 20, $"resident set grew by {(residentAfter - residentBefore) / 1024} KB");
    }

    [Fact]
    public void ManySessionsCreatedAndDisposedDoNotLeak()
    {
        // Sessions own worker threads and a KV cache; creating and disposing them must return both.
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        void Cycle(int count)
        {
            for (int i = 0; i < count; i++)
            {
                using var s = model.CreateSession(new SessionOptions { Threads = 2 });
                s.Forward([1, 403, 407]);
            }
        }
        Cycle(50);
        long managedBefore = Reliability.SettledManagedBytes();
        long residentBefore = Reliability.ResidentBytes();
        int threadsBefore = System.Diagnostics.Process.GetCurrentProcess().Threads.Count;
        Cycle(500);
        long managedAfter = Reliability.SettledManagedBytes();
        long residentAfter = Reliability.ResidentBytes();
        int threadsAfter = System.Diagnostics.Process.GetCurrentProcess().Threads.Count;
        output.WriteLine($"500 sessions: managed {managedAfter - managedBefore:+#;-#;0} B, resident {(residentAfter - residentBefore) / 1024:+#;-#;0} KB, threads {threadsBefore} -> {threadsAfter}");
        Assert.True(managedAfter - managedBefore < 256 * 1024, $"managed heap grew by {managedAfter - managedBefore} bytes");
        Assert.True(residentAfter - residentBefore < 16 << 20, $"resident set grew by {(residentAfter - residentBefore) / 1024} KB");
        Assert.True(threadsAfter <= threadsBefore + 4, $"threads {threadsBefore} -> {threadsAfter}: disposed sessions left workers running");
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

    /// <summary>Lines of /proc/self/maps that map a file under <paramref name="folder"/> (0 where there is no /proc).</summary>
    private static int MappingsOf(string folder)
    {
        if (!File.Exists("/proc/self/maps"))
            return 0;
        // The kernel names the file by its real path.
        string full = new DirectoryInfo(Path.GetFullPath(folder)).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? Path.GetFullPath(folder);
        int count = 0;
        foreach (string line in File.ReadLines("/proc/self/maps"))
        {
            if (line.Contains(full, StringComparison.Ordinal))
                count++;
        }
        return count;
    }

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
