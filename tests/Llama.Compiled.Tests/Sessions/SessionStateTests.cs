using System;
using System.IO;
using System.Linq;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>Save/restore, context shift, threads and disposal of the compiled stories260K sessions.</summary>
public sealed class SessionStateTests
{
    [Fact]
    public void SaveAndRestoreRoundTripsExactly()
    {
        int[] tokens = ReferenceLogitsTests.ReferenceTokens();
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var original = model.CreateSession();
        original.Forward(tokens.AsSpan(0, 10));
        var saved = new MemoryStream();
        original.Save(saved);
        float[] expected = original.Forward(tokens[10]).ToArray();

        using var restored = model.CreateSession();
        restored.Forward(3); // state that Restore must replace
        saved.Position = 0;
        restored.Restore(saved);
        Assert.Equal(10, restored.Position);
        float[] actual = restored.Forward(tokens[10]).ToArray();
        Assert.Equal(expected, actual); // bit-exact
    }

    [Fact]
    public void RestoreRejectsTruncatedOrForeignState()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession();
        session.Forward([1, 403, 407]);
        var saved = new MemoryStream();
        session.Save(saved);
        byte[] bytes = saved.ToArray();

        Assert.Throws<InvalidDataException>(() => session.Restore(new MemoryStream(bytes, 0, bytes.Length - 1)));
        Assert.Equal(0, session.Position);

        byte[] otherShape = (byte[])bytes.Clone();
        BitConverter.GetBytes(Stories260K.LayerCount + 1).CopyTo(otherShape, 8); // header[2] = LayerCount
        var e = Assert.Throws<InvalidDataException>(() => session.Restore(new MemoryStream(otherShape)));
        Assert.Contains("LayerCount", e.Message);

        Assert.Throws<InvalidDataException>(() => session.Restore(new MemoryStream(new byte[100])));
    }

    [Fact]
    public void RestoreRejectsTheStateOfOtherWeightsOfTheSameShape()
    {
        // The same file mapped and copied: the same weights, whatever the loading.
        string path = Path.Combine(TestPaths.Stories260KHf, "model.safetensors");
        using var mapped = Stories260K.Load(path);
        using var copied = Stories260K.Load(path, WeightLoading.Copy);
        using var session = mapped.CreateSession();
        session.Forward([1, 403, 407]);
        var saved = new MemoryStream();
        session.Save(saved);
        using var copySession = copied.CreateSession();
        copySession.Restore(new MemoryStream(saved.ToArray()));
        Assert.Equal(session.Logits.ToArray(), copySession.Logits.ToArray());

        // One weight changed at the end of the file (the last tensor's last element): the same shape, other weights.
        string other = Path.Combine(Path.GetTempPath(), $"llc-other-weights-{Guid.NewGuid():N}.safetensors");
        try
        {
            byte[] bytes = File.ReadAllBytes(path);
            BitConverter.GetBytes(BitConverter.ToSingle(bytes, bytes.Length - 4) + 0.5f).CopyTo(bytes, bytes.Length - 4);
            File.WriteAllBytes(other, bytes);
            using var otherModel = Stories260K.Load(other);
            using var otherSession = otherModel.CreateSession();
            otherSession.Forward([1, 2]);
            var e = Assert.Throws<InvalidDataException>(() => otherSession.Restore(new MemoryStream(saved.ToArray())));
            Assert.Contains("other weights", e.Message);
            Assert.Equal(0, otherSession.Position);
        }
        finally
        {
            File.Delete(other);
        }
    }

    [Fact]
    public void FullSessionThrowsByDefault()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession();
        session.Forward(Enumerable.Repeat(5, Stories260K.MaxContext).ToArray());
        Assert.Equal(Stories260K.MaxContext, session.Position);
        var e = Assert.Throws<InvalidOperationException>(() => session.Forward(5));
        Assert.Contains("MaxContext", e.Message);
        Assert.Equal(Stories260K.MaxContext, session.Position);
    }

    [Fact]
    public void ShiftedSessionKeepsProducingValidTokens()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession(new SessionOptions { Overflow = ContextOverflow.Shift, KeepTokens = 1 });
        int token = 1;
        for (int step = 0; step < Stories260K.MaxContext * 2; step++)
        {
            ReadOnlySpan<float> logits = session.Forward(token);
            Assert.True(session.Position <= Stories260K.MaxContext);
            float max = float.MinValue;
            for (int i = 0; i < logits.Length; i++)
            {
                Assert.True(float.IsFinite(logits[i]));
                if (logits[i] > max)
                {
                    max = logits[i];
                    token = i;
                }
            }
        }
        Assert.InRange(session.Position, Stories260K.MaxContext / 2, Stories260K.MaxContext);
    }

    [Fact]
    public void ShiftReRotatesLayerZeroKeysToTheirNewPositions()
    {
        // Layer 0's keys and values depend only on the token and its position, so after a shift they
        // must equal those of a fresh session that evaluated the surviving tokens at their new positions.
        // (Deeper layers legitimately differ: their inputs saw the dropped tokens.)
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        var rng = new Random(3);
        int[] tokens = Enumerable.Range(0, Stories260K.MaxContext).Select(_ => rng.Next(3, Stories260K.VocabSize)).ToArray();
        tokens[0] = 1;
        using var shifted = model.CreateSession(new SessionOptions { Overflow = ContextOverflow.Shift, KeepTokens = 1 });
        shifted.Forward(tokens);
        shifted.Forward(7);
        int discarded = Stories260K.MaxContext + 1 - shifted.Position;
        Assert.True(discarded > 0);

        using var fresh = model.CreateSession();
        fresh.Forward([tokens[0], .. tokens.AsSpan(1 + discarded), 7]);
        Assert.Equal(fresh.Position, shifted.Position);

        float[] a = LayerZeroCache(shifted), b = LayerZeroCache(fresh);
        Assert.True(ReferenceLogitsTests.MaxAbsDiff(a, b) < 1e-4f, $"max diff {ReferenceLogitsTests.MaxAbsDiff(a, b)}");
    }

    /// <summary>Layer 0's keys and values from a saved state (after the header and the logits).</summary>
    private static float[] LayerZeroCache(Stories260K.Session session)
    {
        var stream = new MemoryStream();
        session.Save(stream);
        int offset = 12 * sizeof(int) + sizeof(ulong) + Stories260K.VocabSize * sizeof(float); // header, weights fingerprint, logits
        int floats = 2 * Stories260K.KvHeadCount * session.Position * Stories260K.HeadDim;
        float[] cache = new float[floats];
        Buffer.BlockCopy(stream.ToArray(), offset, cache, 0, floats * sizeof(float));
        return cache;
    }

    [Fact]
    public void ThreadCountDoesNotChangeTheLogits()
    {
        int[] tokens = ReferenceLogitsTests.ReferenceTokens();
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var one = model.CreateSession(new SessionOptions { Threads = 1 });
        using var three = model.CreateSession(new SessionOptions { Threads = 3 });
        var prompt = Enumerable.Range(0, 300).Select(i => (i * 11) % 500 + 3).ToArray();
        Assert.Equal(one.Forward(prompt).ToArray(), three.Forward(prompt).ToArray());
        Assert.Equal(one.Forward(tokens[3]).ToArray(), three.Forward(tokens[3]).ToArray());
    }

    [Fact]
    public void DisposedModelMakesSessionsThrowObjectDisposed()
    {
        var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession();
        session.Forward(1);
        model.Dispose();
        Assert.Throws<ObjectDisposedException>(() => session.Forward(403));
        Assert.Throws<ObjectDisposedException>(() => model.CreateSession());
    }

    [Fact]
    public void OutOfRangeTokensAreRejected()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var session = model.CreateSession();
        Assert.Throws<ArgumentOutOfRangeException>(() => session.Forward(Stories260K.VocabSize));
        Assert.Throws<ArgumentOutOfRangeException>(() => session.Forward(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => session.Forward([1, 2, 99999]));
        Assert.Equal(0, session.Position);
        Assert.Throws<ArgumentException>(() => session.Forward(ReadOnlySpan<int>.Empty));
    }
}
