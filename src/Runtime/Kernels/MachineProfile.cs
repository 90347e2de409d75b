using System;
using System.ComponentModel;
using System.Globalization;
using System.IO;

namespace Llama.Compiled.CompilerServices;

/// <summary>
/// The facts about the running machine that generated kernels decide on at run time, not at build time (the machine
/// that builds an app is rarely the one that runs it): when splitting a call across threads pays, and how much of a
/// model stays in the last-level cache from one token to the next. Each is read once, at first use.
/// </summary>
[EditorBrowsable(EditorBrowsableState.Never)]
public static class MachineProfile
{
    /// <summary>The runtimeconfig option (<c>&lt;RuntimeHostConfigurationOption&gt;</c>) that sets <see cref="ParallelWork"/>.</summary>
    public const string ParallelWorkSwitch = "Llama.Compiled.ParallelWork";

    /// <summary>The environment variable that sets <see cref="ParallelWork"/> when the runtimeconfig does not.</summary>
    public const string ParallelWorkVariable = "LLAMA_COMPILED_PARALLEL_WORK";

    /// <summary>The runtimeconfig option that sets <see cref="LastLevelCacheBytes"/> (for machines whose cache cannot be read).</summary>
    public const string LastLevelCacheSwitch = "Llama.Compiled.LastLevelCacheBytes";

    /// <summary>
    /// Multiply-adds from which a kernel call is split across the worker pool; smaller calls run on the calling thread.
    /// The default, 64 K, was measured with LlamaBench on 2-core EPYC machines (2-thread decode, in the same run as
    /// llama.cpp): a split costs about a microsecond, since the caller runs the parts no worker has claimed yet;
    /// lowering it from 1 M to 64 K took stories15M from 1.23× to 1.50× llama.cpp (F32) and 1.50× to 2.42× (Q8_0), and
    /// 128 K left its 288×288 products unsplit. Below 64 K (stories260K) a product takes about as long as the split.
    /// Machines with a slower wake-up (many cores, other operating systems) set it with <see cref="ParallelWorkSwitch"/>
    /// or <see cref="ParallelWorkVariable"/>.
    /// </summary>
    public static readonly long ParallelWork = ReadParallelWork();

    /// <summary>
    /// Bytes of the largest cache of the CPU the process started on (Linux: the largest <c>size</c> under
    /// /sys/devices/system/cpu/cpu0/cache), at most <see cref="DefaultLastLevelCacheBytes"/>, which is also what is
    /// taken where it cannot be read. The cap: a virtual machine reports its host's whole shared L3 (300 MB on the
    /// 2-vCPU Xeon of 2026-11-30) of which its cores get a fraction; with that figure stories110M Q8_0 (120 MB) took the
    /// cache-resident decode and ran at 79–90 t/s on one thread against 102–127 t/s with 32 MB (interleaved A/B).
    /// A smaller cache (a laptop's 8 MB) lowers the budget; the runtimeconfig option sets it outright.
    /// </summary>
    public static readonly long LastLevelCacheBytes = ReadLastLevelCacheBytes();

    /// <summary>32 MB: the L3 of one EPYC Zen 3/Zen 4 core complex, the cache these kernels were measured with.</summary>
    public const long DefaultLastLevelCacheBytes = 32L << 20;

    /// <summary>
    /// True when <paramref name="weightBytes"/> of weights stay in the last-level cache between tokens, so that the
    /// one-token loop is bound by compute rather than by memory.
    /// </summary>
    public static bool FitsLastLevelCache(long weightBytes) => weightBytes <= LastLevelCacheBytes;

    private static long ReadParallelWork()
    {
        string? text = AppContext.GetData(ParallelWorkSwitch)?.ToString() ?? Environment.GetEnvironmentVariable(ParallelWorkVariable);
        return long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out long value) && value >= 0 ? value : 1L << 16;
    }

    private static long ReadLastLevelCacheBytes()
    {
        if (long.TryParse(AppContext.GetData(LastLevelCacheSwitch)?.ToString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long configured) && configured > 0)
            return configured;
        long largest = 0;
        try
        {
            const string Caches = "/sys/devices/system/cpu/cpu0/cache";
            if (OperatingSystem.IsLinux() && Directory.Exists(Caches))
            {
                foreach (string index in Directory.EnumerateDirectories(Caches, "index*"))
                {
                    string sizeFile = Path.Combine(index, "size");
                    if (File.Exists(sizeFile) && ParseCacheSize(File.ReadAllText(sizeFile)) is long size)
                        largest = Math.Max(largest, size);
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // sysfs unreadable (a sandbox): the default below
        }
        return largest > 0 ? Math.Min(largest, DefaultLastLevelCacheBytes) : DefaultLastLevelCacheBytes;
    }

    /// <summary>sysfs' cache size text ("48K", "2048K", "32M", "1G" or plain bytes) in bytes; null if it is not one.</summary>
    public static long? ParseCacheSize(string text)
    {
        text = text.Trim();
        if (text.Length == 0)
            return null;
        long unit = char.ToUpperInvariant(text[^1]) switch { 'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, _ => 1 };
        string digits = unit == 1 ? text : text[..^1];
        return long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out long value) && value > 0 ? value * unit : null;
    }
}
