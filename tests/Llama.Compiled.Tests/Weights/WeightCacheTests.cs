using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using Llama.Compiled.CompilerServices;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// The cache a mapped load converts into (<see cref="WeightCache"/>): stories260K's Q8_0 file, copied into a folder of
/// each test, bound as <see cref="Stories260KQ8"/> binds it — the Q8_0 matrices rearranged into the kernels' layout, the
/// Q8_0 embedding expanded to F32 — so every load here has tensors to convert.
/// </summary>
public sealed class WeightCacheTests : IDisposable
{
    private const string Q8File = "stories260K-q8_0.gguf";

    private readonly string _folder = Directory.CreateTempSubdirectory("llama-compiled-weight-cache-").FullName;
    private readonly string _model;
    private readonly string _userCache;

    public WeightCacheTests()
    {
        _model = Path.Combine(_folder, "model", Q8File);
        Directory.CreateDirectory(Path.GetDirectoryName(_model)!);
        File.Copy(Path.Combine(TestPaths.Stories260K, Q8File), _model);
        _userCache = Path.Combine(_folder, "user-cache");
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private string BesideCache => _model + WeightCache.Extension;

    [Fact]
    public void TheFirstLoadWritesTheCacheBesideTheModelAndLaterLoadsMapIt()
    {
        byte[][] copied = BoundBytes(WeightLoading.Copy);

        using (ModelWeights first = Open())
        {
            byte[][] built = Bind(first);
            Assert.NotNull(first.Cache!.BuildPath);
            Assert.Null(first.Cache.ExistingPath);
            Assert.Equal(0, first.OwnedBytes); // even the first load reads its conversions back from the file
            Assert.True(File.Exists(BesideCache));
            Assert.Equal(copied, built);
        }

        using ModelWeights later = Open();
        byte[][] mapped = Bind(later);
        Assert.Equal(BesideCache, later.Cache!.ExistingPath);
        Assert.Null(later.Cache.BuildPath);
        Assert.Equal(0, later.OwnedBytes);
        Assert.Equal(copied, mapped);
        Assert.False(Directory.Exists(_userCache));
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(_model)!, "*.tmp"));
    }

    [Fact]
    public void TheGeneratedModelGivesTheCopiedLoadsLogitsFromTheCache()
    {
        // Load(path) puts the cache where LLAMA_COMPILED_CACHE_DIR says: this test process's folder (WeightCacheIsolation).
        string cacheFolder = Environment.GetEnvironmentVariable(WeightCache.DirectoryVariable)!;
        string cache = WeightCache.CandidatePaths(_model, cacheFolder, null).Single();
        using var copied = Stories260KQ8.Load(_model, WeightLoading.Copy);
        using (var first = Stories260KQ8.Load(_model))
            AssertSameLogits(copied, first);
        Assert.True(File.Exists(cache));
        DateTime written = File.GetLastWriteTimeUtc(cache);
        using (var later = Stories260KQ8.Load(_model))
            AssertSameLogits(copied, later);
        Assert.Equal(written, File.GetLastWriteTimeUtc(cache)); // mapped, not rewritten
        File.Delete(cache);
    }

    [Fact]
    public void ACacheOfChangedWeightsIsRebuilt()
    {
        byte[][] copied = BoundBytes(WeightLoading.Copy);
        BuildCache();
        File.SetLastWriteTimeUtc(_model, File.GetLastWriteTimeUtc(_model).AddMinutes(1));

        using (ModelWeights stale = Open())
        {
            Assert.Equal(copied, Bind(stale));
            Assert.Null(stale.Cache!.ExistingPath);
            Assert.NotNull(stale.Cache.BuildPath);
        }
        using ModelWeights rebuilt = Open();
        Assert.Equal(copied, Bind(rebuilt));
        Assert.Equal(BesideCache, rebuilt.Cache!.ExistingPath);
    }

    [Theory]
    [InlineData("truncated")]
    [InlineData("header")]
    [InlineData("index")]
    [InlineData("data")]
    public void ATruncatedOrCorruptCacheIsRebuilt(string damage)
    {
        byte[][] copied = BoundBytes(WeightLoading.Copy);
        BuildCache();
        using (var file = new FileStream(BesideCache, FileMode.Open, FileAccess.ReadWrite))
        {
            long at = damage switch
            {
                "header" => 20,               // inside the file length field
                "index" => file.Length - 1,   // the index ends the file
                "data" => 4096,               // the first tensor's first byte, which its sampled hash covers
                _ => -1,
            };
            if (at < 0)
            {
                file.SetLength(file.Length - 100);
            }
            else
            {
                file.Position = at;
                int b = file.ReadByte();
                file.Position = at;
                file.WriteByte((byte)(b ^ 0x5A));
            }
        }

        using (ModelWeights damaged = Open())
        {
            Assert.Equal(copied, Bind(damaged));
            Assert.NotNull(damaged.Cache!.BuildPath);
            // A damaged index or header leaves nothing to map; a damaged tensor only that tensor.
            if (damage != "data")
                Assert.Null(damaged.Cache.ExistingPath);
        }
        using ModelWeights rebuilt = Open();
        Assert.Equal(copied, Bind(rebuilt));
        Assert.Equal(BesideCache, rebuilt.Cache!.ExistingPath);
        Assert.Null(rebuilt.Cache.BuildPath);
    }

    [Fact]
    public void WhereTheModelFolderIsNotWritableTheUserCacheIsUsed()
    {
        List<string> candidates = WeightCache.CandidatePaths(_model, null, _userCache);
        Assert.Equal(BesideCache, candidates[0]);
        Assert.StartsWith(_userCache + Path.DirectorySeparatorChar, candidates[1]);

        // A folder under a regular file cannot be created, whoever runs the test (root ignores a read-only mode).
        string notWritable = Path.Combine(_model, "sub", Path.GetFileName(BesideCache));
        using WeightCache.Build build = WeightCache.Build.Start([notWritable, candidates[1]])!;
        Assert.StartsWith(candidates[1] + ".", build.TempPath);
        Assert.Equal(candidates[1], build.FinalPath);
        build.Abandon();
        Assert.False(File.Exists(build.TempPath));
    }

    [Fact]
    public void WhenNothingIsWritableTheConversionsAreMadeInMemory()
    {
        byte[][] copied = BoundBytes(WeightLoading.Copy);
        string notWritable = Path.Combine(_model, "sub");
        using ModelWeights weights = ModelWeights.Open(_model, Stories260KQ8.CompiledShape, WeightLoading.Map, notWritable, null);
        Assert.Equal(copied, Bind(weights));
        Assert.Null(weights.Cache!.BuildPath);
        Assert.Null(weights.Cache.ExistingPath);
        Assert.True(weights.OwnedBytes > 0);
    }

    [Fact]
    public void MapWithoutCacheWritesNoCache()
    {
        byte[][] copied = BoundBytes(WeightLoading.Copy);
        using ModelWeights weights = ModelWeights.Open(_model, Stories260KQ8.CompiledShape, WeightLoading.MapWithoutCache, null, _userCache);
        Assert.Equal(copied, Bind(weights));
        Assert.Null(weights.Cache);
        Assert.True(weights.OwnedBytes > 0);
        Assert.Single(Directory.GetFiles(Path.GetDirectoryName(_model)!));
    }

    [Fact]
    public void ConcurrentFirstLoadsEachGetTheWeightsAndLeaveOneCache()
    {
        byte[][] copied = BoundBytes(WeightLoading.Copy);
        const int Loads = 4;
        using var start = new Barrier(Loads);
        byte[][]?[] results = new byte[Loads][][];
        Thread[] threads = Enumerable.Range(0, Loads).Select(i => new Thread(() =>
        {
            start.SignalAndWait();
            using ModelWeights weights = Open();
            results[i] = Bind(weights);
        })).ToArray();
        foreach (Thread thread in threads)
            thread.Start();
        foreach (Thread thread in threads)
            thread.Join();
        foreach (byte[][]? result in results)
            Assert.Equal(copied, result);
        Assert.Equal(new[] { BesideCache }, Directory.GetFiles(Path.GetDirectoryName(_model)!).Where(f => f != _model));

        using ModelWeights later = Open();
        Assert.Equal(copied, Bind(later));
        Assert.Equal(BesideCache, later.Cache!.ExistingPath);
    }

    private ModelWeights Open() => ModelWeights.Open(_model, Stories260KQ8.CompiledShape, WeightLoading.Map, null, _userCache);

    private void BuildCache()
    {
        using ModelWeights weights = Open();
        Bind(weights);
        Assert.True(File.Exists(BesideCache));
    }

    private byte[][] BoundBytes(WeightLoading loading)
    {
        using ModelWeights weights = ModelWeights.Open(_model, Stories260KQ8.CompiledShape, loading, null, _userCache);
        return Bind(weights);
    }

    /// <summary>Requests every tensor as <see cref="Stories260KQ8"/>'s constructor does and returns the bytes of each view, in order.</summary>
    private static byte[][] Bind(ModelWeights weights)
    {
        const int Hidden = Stories260KQ8.HiddenSize, Ffn = Stories260KQ8.IntermediateSize;
        const int QueryDim = Stories260KQ8.HeadCount * Stories260KQ8.HeadDim, KvDim = Stories260KQ8.KvHeadCount * Stories260KQ8.HeadDim;
        var bytes = new List<byte[]>
        {
            F32(weights.GetMatrix("model.embed_tokens.weight", Stories260KQ8.VocabSize, Hidden)),
            F32(weights.GetVector("model.norm.weight", Hidden)),
            weights.GetPackedMatrix("model.embed_tokens.weight", Stories260KQ8.VocabSize, Hidden, WeightFormat.Q8_0).Bytes.ToArray(),
        };
        for (int layer = 0; layer < Stories260KQ8.LayerCount; layer++)
        {
            string prefix = $"model.layers.{layer}.";
            bytes.Add(F32(weights.GetVector(prefix + "input_layernorm.weight", Hidden)));
            foreach ((string name, int rows) in new[] { ("self_attn.q_proj", QueryDim), ("self_attn.k_proj", KvDim), ("self_attn.v_proj", KvDim), ("mlp.gate_proj", Ffn), ("mlp.up_proj", Ffn) })
                bytes.Add(weights.GetPackedMatrix(prefix + name + ".weight", rows, Hidden, WeightFormat.Q8_0).Bytes.ToArray());
            bytes.Add(weights.GetPackedMatrix(prefix + "self_attn.o_proj.weight", Hidden, QueryDim, WeightFormat.Q8_0).Bytes.ToArray());
            bytes.Add(F32(weights.GetVector(prefix + "post_attention_layernorm.weight", Hidden)));
            bytes.Add(F32(weights.GetMatrix(prefix + "mlp.down_proj.weight", Hidden, Ffn))); // 172 columns: no Q8_0 blocks
        }
        if (weights.Contains("lm_head.weight"))
            weights.MarkUsed("lm_head.weight");
        weights.ThrowIfUnusedTensors();
        return bytes.ToArray();

        static byte[] F32(WeightTensor tensor) => System.Runtime.InteropServices.MemoryMarshal.AsBytes(tensor.Span).ToArray();
    }

    private static void AssertSameLogits(ILlamaModel expected, ILlamaModel actual)
    {
        using ILlamaSession expectedSession = expected.CreateSession();
        using ILlamaSession actualSession = actual.CreateSession();
        foreach (int token in ReferenceLogitsTests.ReferenceTokens())
            Assert.Equal(expectedSession.Forward(token).ToArray(), actualSession.Forward(token).ToArray());
    }
}
