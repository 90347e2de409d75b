using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Text;
using Xunit;
using Llama.Compiled.LlamaCpp;

namespace Llama.Compiled.Oracle.Tests;

/// <summary>One decode step of a compiled model and llama.cpp fed the same token.</summary>
/// <param name="Step">Position of the token.</param>
/// <param name="Token">The token fed at this step.</param>
/// <param name="OursArgMax">Argmax of the compiled model's logits.</param>
/// <param name="LlamaArgMax">Argmax of llama.cpp's logits.</param>
/// <param name="MaxAbsDiff">max |ours − llama.cpp| over the vocabulary.</param>
/// <param name="MaxAbsLogit">max |llama.cpp logit| (the scale the tolerances are relative to).</param>
/// <param name="LlamaMargin">llama.cpp's top-1 minus top-2 logit: how far its argmax is from a tie.</param>
internal sealed record StepComparison(int Step, int Token, int OursArgMax, int LlamaArgMax, float MaxAbsDiff, float MaxAbsLogit, float LlamaMargin)
{
    public float RelativeDiff => MaxAbsDiff / MaxAbsLogit;

    /// <summary>
    /// The argmaxes differ although llama.cpp's top two are closer than twice the logit difference: a flip
    /// the measured numerical difference fully explains (either answer is right). Only such steps are excused.
    /// </summary>
    public bool IsNearTie => OursArgMax != LlamaArgMax && LlamaMargin <= 2 * MaxAbsDiff;
}

/// <summary>
/// A compiled model and llama.cpp decoding side by side. llama.cpp decodes greedily and both are fed its
/// token at every step (teacher forcing), so a step's logits are always compared on the same prefix;
/// "greedy tokens identical" means the compiled model's argmax equals llama.cpp's at every step.
/// </summary>
internal sealed class OracleComparison
{
    private OracleComparison(string label, List<StepComparison> steps, float[][] ours, float[][] llama)
    {
        Label = label;
        Steps = steps;
        OursLogits = ours;
        LlamaLogits = llama;
    }

    public string Label { get; }

    public IReadOnlyList<StepComparison> Steps { get; }

    public float[][] OursLogits { get; }

    public float[][] LlamaLogits { get; }

    public int[] Tokens => Steps.Select(s => s.Token).ToArray();

    public float MaxRelativeDiff => Steps.Max(s => s.RelativeDiff);

    public float LargestDiff => Steps.Max(s => s.MaxAbsDiff);

    /// <summary>Leading steps whose argmaxes are identical.</summary>
    public int IdenticalPrefix
    {
        get
        {
            int n = 0;
            while (n < Steps.Count && Steps[n].OursArgMax == Steps[n].LlamaArgMax)
                n++;
            return n;
        }
    }

    /// <summary>
    /// Greedy decoding from <paramref name="first"/> for <paramref name="steps"/> steps, llama.cpp choosing the
    /// tokens (or <paramref name="forcedTokens"/> when given: both are fed exactly those).
    /// </summary>
    public static OracleComparison Run(string label, ILlamaModel ours, LlamaCppOracle llama, int first, int steps, IReadOnlyList<int>? forcedTokens = null)
    {
        Assert.Equal(ours.Shape.VocabSize, llama.VocabSize);
        using ILlamaSession session = ours.CreateSession();
        llama.Reset();
        var results = new List<StepComparison>(steps);
        var oursLogits = new float[steps][];
        var llamaLogits = new float[steps][];
        int token = forcedTokens is null ? first : forcedTokens[0];
        for (int step = 0; step < steps; step++)
        {
            Assert.Equal(step, session.Position);
            Assert.Equal(step, llama.Position);
            float[] o = session.Forward(token).ToArray();
            float[] l = llama.Forward(token);
            oursLogits[step] = o;
            llamaLogits[step] = l;
            int lArg = LlamaCppOracle.ArgMax(l);
            results.Add(new StepComparison(step, token, LlamaCppOracle.ArgMax(o), lArg, MaxAbsDiff(o, l), MaxAbs(l), Margin(l)));
            if (step + 1 < steps)
                token = forcedTokens is null ? lArg : forcedTokens[step + 1];
        }
        return new OracleComparison(label, results, oursLogits, llamaLogits);
    }

    /// <summary>
    /// Asserts that the argmaxes agree for the first <paramref name="steps"/> steps. A disagreement is excused
    /// only as a near-tie (<see cref="StepComparison.IsNearTie"/>), at most <paramref name="maxNearTies"/> times.
    /// </summary>
    public void AssertTokensIdentical(int steps, int maxNearTies = 1)
    {
        int nearTies = 0;
        foreach (StepComparison s in Steps.Take(steps))
        {
            if (s.OursArgMax == s.LlamaArgMax)
                continue;
            Assert.True(s.IsNearTie,
                $"{Label}: greedy token differs at step {s.Step}: ours {s.OursArgMax}, llama.cpp {s.LlamaArgMax} "
                + $"(llama.cpp's top-2 margin {F(s.LlamaMargin)} is larger than twice the logit difference {F(s.MaxAbsDiff)}, so this is no near-tie)\n{Table()}");
            nearTies++;
        }
        Assert.True(nearTies <= maxNearTies, $"{Label}: {nearTies} near-tie flips in {steps} steps (at most {maxNearTies} allowed): the model is too tie-prone to test\n{Table()}");
    }

    /// <summary>Asserts max |ours − llama.cpp| ≤ <paramref name="relative"/> × max |logit| at every step.</summary>
    public void AssertLogitsClose(float relative)
    {
        foreach (StepComparison s in Steps)
        {
            Assert.True(s.MaxAbsDiff <= relative * s.MaxAbsLogit,
                $"{Label}: step {s.Step}: max |ours − llama.cpp| = {F(s.MaxAbsDiff)} > {relative} × max|logit| ({F(s.MaxAbsLogit)})\n{Table()}");
        }
    }

    /// <summary>
    /// The argmax must not be settled by ties: at least <paramref name="minDistinct"/> distinct tokens, and a
    /// median top-2 margin that is a visible fraction of the logit scale. Guards the test against models
    /// (seeds, scales) that would make "tokens identical" meaningless or luck.
    /// </summary>
    public void AssertMeaningful(int minDistinct = 4)
    {
        int distinct = Steps.Select(s => s.Token).Distinct().Count();
        Assert.True(distinct >= minDistinct, $"{Label}: the greedy sequence has only {distinct} distinct tokens; choose other random scales\n{Table()}");
        float medianMargin = Steps.Select(s => s.LlamaMargin / s.MaxAbsLogit).OrderBy(x => x).ElementAt(Steps.Count / 2);
        Assert.True(medianMargin >= 1e-3f, $"{Label}: median relative top-2 margin {F(medianMargin)} is too small for argmax comparisons\n{Table()}");
    }

    /// <summary>max over steps and tokens of |<paramref name="logits"/> − <paramref name="reference"/>|.</summary>
    public static float MaxDistance(float[][] logits, float[][] reference)
    {
        Assert.Equal(reference.Length, logits.Length);
        float max = 0;
        for (int s = 0; s < logits.Length; s++)
            max = Math.Max(max, MaxAbsDiff(logits[s], reference[s]));
        return max;
    }

    public string Summary() =>
        $"{Label}: {Steps.Count} steps, identical argmax prefix {IdenticalPrefix}, near ties {Steps.Count(s => s.IsNearTie)}, "
        + $"max |diff| {F(LargestDiff)}, max |diff|/max|logit| {F(MaxRelativeDiff)}, min top-2 margin/max|logit| {F(Steps.Min(s => s.LlamaMargin / s.MaxAbsLogit))}, "
        + $"distinct tokens {Steps.Select(s => s.Token).Distinct().Count()}";

    public string Table()
    {
        var text = new StringBuilder("step token ours llama  max|diff|  max|logit|  margin\n");
        foreach (StepComparison s in Steps)
            text.Append(CultureInfo.InvariantCulture, $"{s.Step,4} {s.Token,5} {s.OursArgMax,5} {s.LlamaArgMax,5}  {F(s.MaxAbsDiff),9}  {F(s.MaxAbsLogit),9}  {F(s.LlamaMargin),9}{(s.OursArgMax != s.LlamaArgMax ? "  <--" : "")}\n");
        return text.ToString();
    }

    public static float MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.Equal(a.Length, b.Length);
        float max = 0;
        for (int i = 0; i < a.Length; i++)
        {
            float d = Math.Abs(a[i] - b[i]);
            if (!(d <= max))
                max = float.IsNaN(d) ? float.PositiveInfinity : d;
        }
        return max;
    }

    private static float MaxAbs(ReadOnlySpan<float> a)
    {
        float max = 0;
        foreach (float x in a)
            max = Math.Max(max, Math.Abs(x));
        return max;
    }

    private static float Margin(ReadOnlySpan<float> a)
    {
        float top1 = float.NegativeInfinity, top2 = float.NegativeInfinity;
        foreach (float x in a)
        {
            if (x > top1)
            {
                top2 = top1;
                top1 = x;
            }
            else if (x > top2)
            {
                top2 = x;
            }
        }
        return top1 - top2;
    }

    internal static string F(float x) => x.ToString("G3", CultureInfo.InvariantCulture);
}
