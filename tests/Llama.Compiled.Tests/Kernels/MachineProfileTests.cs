using System;
using System.IO;
using System.Linq;
using Llama.Compiled.CompilerServices;
using Xunit;

namespace Llama.Compiled.Tests.Kernels;

/// <summary>The running machine's facts the generated kernels read: the cache size and the threading threshold.</summary>
public sealed class MachineProfileTests
{
    [Theory]
    [InlineData("48K\n", 48L << 10)]
    [InlineData("2048K", 2048L << 10)]
    [InlineData("32M", 32L << 20)]
    [InlineData("1G", 1L << 30)]
    [InlineData("4096", 4096L)]
    public void ParsesSysfsCacheSizes(string text, long bytes) => Assert.Equal(bytes, MachineProfile.ParseCacheSize(text));

    [Theory]
    [InlineData("")]
    [InlineData("K")]
    [InlineData("-1K")]
    [InlineData("12Q")]
    public void RefusesWhatIsNotASize(string text) => Assert.Null(MachineProfile.ParseCacheSize(text));

    [Fact]
    public void TheLastLevelCacheIsTheLargestCacheOfCpu0CappedAt32MB()
    {
        const string Caches = "/sys/devices/system/cpu/cpu0/cache";
        long expected = OperatingSystem.IsLinux() && Directory.Exists(Caches)
            ? Directory.EnumerateDirectories(Caches, "index*").Select(d => MachineProfile.ParseCacheSize(File.ReadAllText(Path.Combine(d, "size"))) ?? 0).Max()
            : MachineProfile.DefaultLastLevelCacheBytes;
        Assert.Equal(expected > 0 ? Math.Min(expected, MachineProfile.DefaultLastLevelCacheBytes) : MachineProfile.DefaultLastLevelCacheBytes, MachineProfile.LastLevelCacheBytes);
        Assert.True(MachineProfile.FitsLastLevelCache(MachineProfile.LastLevelCacheBytes));
        Assert.False(MachineProfile.FitsLastLevelCache(MachineProfile.LastLevelCacheBytes + 1));
    }

    [Fact]
    public void ParallelWorkIsTheMeasuredDefaultUnlessTheAppSetsIt()
    {
        string? set = (AppContext.GetData(MachineProfile.ParallelWorkSwitch) as string) ?? Environment.GetEnvironmentVariable(MachineProfile.ParallelWorkVariable);
        Assert.Equal(set is null ? 1L << 16 : long.Parse(set), MachineProfile.ParallelWork);
    }
}
