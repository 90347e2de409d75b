using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Threading;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>stories260K compiled with a shorter context: the same weights, a KV cache of another shape.</summary>
[LlamaModel("stories260K/hf/config.json", MaxContext = 256)]
public partial class Stories260KShort;

/// <summary>
/// Tests that measure process-wide quantities (managed heap, working set) or load the machine run
/// in this collection, alone: xunit runs it after the parallel collections, with nothing beside it.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialReliabilityCollection
{
    public const string Name = "Reliability (serial)";
}

/// <summary>Small helpers shared by the reliability tests.</summary>
internal static class Reliability
{
    /// <summary>Index of the largest logit (the first on ties); allocates nothing.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        float max = logits[0];
        for (int i = 1; i < logits.Length; i++)
        {
            if (logits[i] > max)
            {
                max = logits[i];
                best = i;
            }
        }
        return best;
    }

    /// <summary>
    /// Greedy or sampled decoding with a bare <see cref="Sampler"/>: evaluates <paramref name="prompt"/>,
    /// then draws and evaluates <paramref name="steps"/> tokens; returns the drawn ids.
    /// </summary>
    public static int[] Decode(Stories260K.Session session, int[] prompt, int steps, SamplingOptions sampling)
    {
        var sampler = new Sampler(Stories260K.VocabSize, sampling);
        var history = new List<int>(prompt);
        var drawn = new int[steps];
        session.Reset();
        ReadOnlySpan<float> logits = session.Forward(prompt);
        for (int i = 0; i < steps; i++)
        {
            int next = sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(history));
            drawn[i] = next;
            history.Add(next);
            if (session.Position == Stories260K.MaxContext)
                break;
            logits = session.Forward(next);
        }
        return drawn;
    }

    /// <summary>Deterministic pseudo-random token ids in [3, VocabSize), BOS first.</summary>
    public static int[] Prompt(int seed, int length)
    {
        var rng = new Random(seed);
        int[] ids = new int[length];
        ids[0] = Stories260K.BosTokenId;
        for (int i = 1; i < length; i++)
            ids[i] = rng.Next(3, Stories260K.VocabSize);
        return ids;
    }

    /// <summary>Resident set size of this process in bytes (VmRSS on Linux, else the working set).</summary>
    public static long ResidentBytes()
    {
        if (OperatingSystem.IsLinux())
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                    return long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), System.Globalization.CultureInfo.InvariantCulture) * 1024;
            }
        }
        using var process = Process.GetCurrentProcess();
        return process.WorkingSet64;
    }

    /// <summary>Fully collects the managed heap and returns its size.</summary>
    public static long SettledManagedBytes()
    {
        long bytes = 0;
        for (int i = 0; i < 3; i++)
        {
            GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
            bytes = GC.GetTotalMemory(forceFullCollection: true);
        }
        return bytes;
    }
}

/// <summary>A fresh folder under the temp directory, deleted (with whatever was put in it) on dispose.</summary>
internal sealed class TempFolder : IDisposable
{
    public TempFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "llc-reliability-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
