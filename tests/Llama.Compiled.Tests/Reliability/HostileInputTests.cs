using System;
using System.IO;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Tests;

/// <summary>
/// Hostile model paths given to <c>Load</c>: each gives a clear exception naming the path, quickly;
/// never a crash, a hang, or memory proportional to the file.
/// </summary>
public sealed class HostileInputTests(ITestOutputHelper output)
{
    /// <summary>Guards against a hang only (a hung Load fails the test instead of blocking the run); not a timing assertion.</summary>
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(10);

    /// <summary>Runs Load on another thread; a hang fails with the case name (and unblocks a FIFO so the thread can end).</summary>
    internal static Exception? LoadFailure(string path, string name, WeightLoading loading = WeightLoading.Map)
    {
        Task<Exception?> load = Task.Factory.StartNew(() =>
        {
            try
            {
                using var model = Stories260K.Load(path, loading);
                return null;
            }
            catch (Exception e)
            {
                return e;
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        if (!load.Wait(HangGuard))
        {
            UnblockFifos(path);
            load.Wait(HangGuard);
            Assert.Fail($"{name}: Load({path}) hung (did not return within {HangGuard.TotalSeconds} s)");
        }
        return load.Result;
    }

    /// <summary>Opens any FIFO at or in <paramref name="path"/> for writing, which releases a reader blocked in open().</summary>
    private static void UnblockFifos(string path)
    {
        string[] candidates = Directory.Exists(path) ? Directory.GetFiles(path) : [path];
        foreach (string file in candidates)
        {
            try
            {
                using var writer = new FileStream(file, FileMode.Open, FileAccess.Write);
            }
            catch (Exception)
            {
            }
        }
    }

    [Theory]
    [MemberData(nameof(HostileInputs.Theory), MemberType = typeof(HostileInputs))]
    public void LoadFailsClearlyWithThePath(string name) => FailsClearly(name, WeightLoading.Map);

    [Theory]
    [MemberData(nameof(HostileInputs.Theory), MemberType = typeof(HostileInputs))]
    public void CopyingLoadFailsClearlyWithThePath(string name) => FailsClearly(name, WeightLoading.Copy);

    private void FailsClearly(string name, WeightLoading loading)
    {
        using var folder = new TempFolder();
        string path = HostileInputs.Create(name, folder);
        Exception? e = LoadFailure(path, name, loading);

        Assert.True(e is not null, $"{name}: Load({path}) succeeded");
        output.WriteLine($"{name}: {e.GetType().Name}: {e.Message}");
        Assert.True(HostileInputs.IsClearLoadFailure(e), $"{name}: {e.GetType().FullName}: {e.Message}\n{e.StackTrace}");
        Assert.IsType(ExpectedType(name), e);
        Assert.Contains(Path.GetFullPath(path), e.Message);
        Assert.DoesNotContain('\n', e.Message); // one line: the samples print it as is
    }

    /// <summary>The exception each case gives (documented in docs/reliability.md).</summary>
    private static Type ExpectedType(string name) => name switch
    {
        "missing-folder" => typeof(DirectoryNotFoundException),
        "missing-file.safetensors" or "missing-file.gguf" or "missing-file.bin" or "symlink-loop/model.safetensors" => typeof(FileNotFoundException),
        // The OS's ELOOP ("Too many levels of symbolic links") when the name says which reader to use.
        "symlink-loop.safetensors" => typeof(IOException),
        // A looping link without an extension is "not a folder and not a known weights file".
        _ => typeof(ModelFormatException),
    };

    [Theory]
    [InlineData("other-shape.safetensors", "model.embed_tokens.weight", "[512, 64]")]
    [InlineData("other-shape.gguf", "embedding_length", "64")]
    [InlineData("other-shape.bin", "dim", "64")]
    [InlineData("unknown-tensor.safetensors", "model.layers.5.self_attn.q_proj.weight", "unknown tensor")]
    [InlineData("missing-tensor.safetensors", "model.layers.3.mlp.up_proj.weight", "not found")]
    public void WrongModelFilesNameWhatDiffers(string name, string what, string detail)
    {
        using var folder = new TempFolder();
        string path = HostileInputs.Create(name, folder);
        var e = Assert.IsType<ModelFormatException>(LoadFailure(path, name));
        output.WriteLine(e.Message);
        Assert.Contains(what, e.Message);
        Assert.Contains(detail, e.Message);
    }

    [Fact]
    public void AWellFormedFileOfTheRightShapeLoads()
    {
        // The control for the cases above: the same writer, the right shape, loads and runs.
        using var folder = new TempFolder();
        string path = folder.File("right-shape.safetensors");
        HostileInputs.WriteSafetensors(path, HostileInputs.Stories260KShape, extra: null, skip: null);
        using var model = Stories260K.Load(path);
        using var session = model.CreateSession();
        Assert.True(session.Forward([1, 2, 3]).ToArray().All(float.IsFinite));
    }

    [Fact]
    public void NonFiniteWeightsLoadAndNeverCrashTheSampler()
    {
        // Tensor data has no checksum in any of the formats: NaN or infinite weights are not detected
        // at load. They must still not crash: the logits are not finite, and the sampler returns an
        // id inside the vocabulary.
        using var folder = new TempFolder();
        string path = folder.File("nan.safetensors");
        HostileInputs.WriteSafetensors(path, HostileInputs.Stories260KShape, extra: null, skip: null,
            values: (name, v) => name == "model.layers.2.mlp.down_proj.weight" ? v.Select((x, i) => i % 7 == 0 ? float.NaN : i % 11 == 0 ? float.PositiveInfinity : x).ToArray() : v);
        using var model = Stories260K.Load(path);
        using var session = model.CreateSession();
        ReadOnlySpan<float> logits = session.Forward([1, 2, 3]);
        Assert.Contains(logits.ToArray(), x => !float.IsFinite(x));
        foreach (SamplingOptions sampling in new[]
        {
            new SamplingOptions { Temperature = 0f },
            new SamplingOptions { Temperature = 1f, Seed = 1 },
            new SamplingOptions { Temperature = 0.7f, TopK = 10, TopP = 0.9f, MinP = 0.1f, RepetitionPenalty = 1.2f, Seed = 2 },
        })
        {
            int token = new Sampler(Stories260K.VocabSize, sampling).Sample(session.Logits, [1, 2, 3]);
            Assert.InRange(token, 0, Stories260K.VocabSize - 1);
        }
    }

    [Fact]
    public void NullEmptyAndInvalidPathsAreArgumentErrors()
    {
        Assert.Throws<ArgumentNullException>(() => Stories260K.Load(null!));
        Assert.Throws<ArgumentException>(() => Stories260K.Load(""));
        Assert.ThrowsAny<ArgumentException>(() => Stories260K.Load("model\0.safetensors"));
    }

    [Fact]
    public void AVeryLongPathIsAClearError()
    {
        string path = Path.Combine(Path.GetTempPath(), string.Join('/', Enumerable.Repeat(new string('x', 200), 30)));
        Exception? e = LoadFailure(path, "long-path");
        Assert.NotNull(e);
        Assert.True(HostileInputs.IsClearLoadFailure(e), $"{e.GetType().FullName}: {e.Message}");
    }

    [FactWhenPermissionsApply] // reported as skipped as root, who reads any file, and on Windows
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void AnUnreadableFileIsUnauthorizedAccess()
    {
        using var folder = new TempFolder();
        string path = folder.File("model.safetensors");
        File.Copy(Path.Combine(TestPaths.Stories260KHf, "model.safetensors"), path);
        File.SetUnixFileMode(path, UnixFileMode.None);
        var e = Assert.IsType<UnauthorizedAccessException>(LoadFailure(path, "unreadable"));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void OutOfRangeTokensInPrefillSpansEvaluateNothing()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession();
        session.Forward([1, 403, 407]);
        float[] logits = session.Logits.ToArray();
        int[] prompt = Reliability.Prompt(4, 150); // three prefill chunks
        foreach (int bad in new[] { -1, Stories260K.VocabSize, int.MaxValue, int.MinValue })
        {
            foreach (int at in new[] { 0, 63, 64, 149 }) // first chunk, its last token, the second chunk, the last token
            {
                int[] tokens = (int[])prompt.Clone();
                tokens[at] = bad;
                var e = Assert.Throws<ArgumentOutOfRangeException>(() => session.Forward(tokens));
                Assert.Contains(bad.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message);
                Assert.Equal(3, session.Position);
                Assert.Equal(logits, session.Logits.ToArray());
            }
        }
        // The cache was not touched: the next step equals a session that never saw the bad calls.
        using var fresh = model.CreateSession();
        fresh.Forward([1, 403, 407]);
        Assert.Equal(fresh.Forward(prompt).ToArray(), session.Forward(prompt).ToArray());
    }

    [Fact]
    public void OutOfRangeIdsInAGeneratorPromptAreArgumentErrors()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession();
        var generator = new TextGenerator(session, LlamaTokenizers.Load(TestPaths.Stories260KHf));
        Assert.ThrowsAny<ArgumentException>(() => generator.Generate([1, Stories260K.VocabSize]));
        Assert.ThrowsAny<ArgumentException>(() => generator.Generate([1, -3]));
        Assert.ThrowsAny<ArgumentException>(() => generator.Generate(Array.Empty<int>()));
        Assert.Equal(0, session.Position);
    }
}

/// <summary>4 GB sparse files of zeros: rejected without reading or allocating in proportion to the file.</summary>
[Collection(SerialReliabilityCollection.Name)]
public sealed class HugeFileTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("zeros.safetensors")]
    [InlineData("zeros.gguf")]
    [InlineData("zeros.bin")]
    [InlineData("zeros-folder")] // a folder holding a 4 GB model.safetensors
    public void FourGigabytesOfZerosAreRejectedWithoutReadingThem(string name)
    {
        using var folder = new TempFolder();
        string path = HostileInputs.SparseZeros(name, folder);
        Reliability.SettledManagedBytes();
        long residentBefore = Reliability.ResidentBytes();
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);

        Exception? e = HostileInputTests.LoadFailure(path, name);

        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        long residentGrowth = Reliability.ResidentBytes() - residentBefore;
        output.WriteLine($"{name}: {e?.GetType().Name}: {e?.Message}; allocated {allocated / 1024} KB, resident +{residentGrowth / 1024} KB");
        var format = Assert.IsType<ModelFormatException>(e);
        Assert.Contains(Path.GetFullPath(path), format.Message);
        Assert.True(allocated < 16 << 20, $"{allocated} bytes allocated for a 4 GB file");
        Assert.True(residentGrowth < 64 << 20, $"resident set grew by {residentGrowth / 1024} KB for a 4 GB file");
    }
}
