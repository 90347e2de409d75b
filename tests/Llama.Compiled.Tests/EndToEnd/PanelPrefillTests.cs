using System;
using System.Linq;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// Batched prefill through the F32 panel kernels (64-token panels of transposed x, 6 rows per pass) against the
/// one-token path, on stories260K: its 64-wide matrices run in panels with rows that are not multiples of 6 (64, 32,
/// 172 and 512 rows), its 172-wide down_proj in the token tiles. The lengths give whole panels, a padded panel with a
/// partial group of 8 tokens, a whole panel followed by a padded one, and a whole panel followed by token tiles and single tokens.
/// </summary>
public sealed class PanelPrefillTests
{
    private const float Tolerance = 1e-4f; // as against llama2.c: different summation orders of the same F32 products

    [Theory]
    [InlineData(64, 1)]
    [InlineData(45, 1)]
    [InlineData(100, 1)]
    [InlineData(70, 1)]
    [InlineData(45, 2)]
    [InlineData(100, 2)]
    public void PrefillGivesTheLogitsOfTokenByTokenDecode(int length, int threads)
    {
        var random = new Random(length);
        int[] tokens = Enumerable.Range(0, length).Select(i => i == 0 ? 1 : random.Next(3, Stories260K.VocabSize)).ToArray();
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using var stepwise = model.CreateSession(new SessionOptions { Threads = threads });
        float[] expected = Array.Empty<float>();
        foreach (int token in tokens)
            expected = stepwise.Forward(token).ToArray();

        using var batched = model.CreateSession(new SessionOptions { Threads = threads });
        float[] actual = batched.Forward(tokens).ToArray();
        float diff = ReferenceLogitsTests.MaxAbsDiff(actual, expected);
        Assert.True(diff <= Tolerance, $"{length} tokens, {threads} thread(s): max |prefill − decode| = {diff}");

        // The next token after the prefill continues as decoding all along does.
        int next = ReferenceLogitsTests.ArgMax(expected);
        diff = ReferenceLogitsTests.MaxAbsDiff(batched.Forward(next), stepwise.Forward(next));
        Assert.True(diff <= Tolerance, $"{length} tokens, {threads} thread(s): the step after the prefill differs by {diff}");
    }
}
