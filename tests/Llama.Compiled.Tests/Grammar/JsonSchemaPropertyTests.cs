using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using Xunit;
using Xunit.Abstractions;

namespace Llama.Compiled.Tests.Grammars;

/// <summary>
/// Hundreds of seeded random schemas, each compiled and sampled at temperature 1 with random logits over a real
/// vocabulary (SentencePiece 512 and 32000, byte-level BPE Llama 3 and Qwen3): every output must be complete, parse, and
/// validate against its schema with JsonSchema.Net (formats asserted).
/// </summary>
public class JsonSchemaPropertyTests(ITestOutputHelper output)
{
    private static readonly EvaluationOptions Validation = new() { RequireFormatValidation = true, OutputFormat = OutputFormat.List };

    [Theory]
    [InlineData("stories260K-sp512", 0, 150)]
    [InlineData("llama2-sp32000", 1000, 150)]
    [InlineData("llama3-bpe", 2000, 100)]
    [InlineData("qwen3-bpe", 3000, 100)]
    public void SampledOutputsValidateAgainstTheirSchemas(string vocabName, int firstSeed, int count)
    {
        Vocab vocab = Vocabs.ByName(vocabName);
        var failures = new List<string>();
        long tokens = 0;
        var clock = Stopwatch.StartNew();
        for (int seed = firstSeed; seed < firstSeed + count; seed++)
        {
            string schemaText = new RandomSchemas(seed).Next().ToJsonString();
            Grammar grammar = Grammar.FromJsonSchema(schemaText);
            RandomModel.Output result = RandomModel.Generate(grammar, vocab, (ulong)seed + 1);
            tokens += result.Ids.Count;
            string? problem = Check(schemaText, result);
            if (problem is not null)
                failures.Add($"seed {seed}: {problem}\n  schema: {schemaText}\n  output: {result.Text}\n");
        }
        output.WriteLine($"{count} schemas, {tokens} tokens, {clock.Elapsed.TotalSeconds:F1} s");
        Assert.True(failures.Count == 0, $"{failures.Count} of {count} failed:\n" + string.Join("\n", failures));
    }

    private static string? Check(string schemaText, RandomModel.Output result)
    {
        if (!result.Finished)
            return $"not finished after {result.Ids.Count} tokens";
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(result.Text);
        }
        catch (JsonException e)
        {
            return "does not parse: " + e.Message;
        }
        using (document)
        {
            EvaluationResults evaluation = JsonSchema.FromText(schemaText).Evaluate(document.RootElement, Validation);
            if (evaluation.IsValid)
                return null;
            var errors = new StringBuilder("invalid:");
            foreach (EvaluationResults detail in evaluation.Details ?? [])
            {
                if (detail.Errors is { } e)
                {
                    foreach (var error in e)
                        errors.Append($" {detail.InstanceLocation} {error.Key}: {error.Value};");
                }
            }
            return errors.ToString();
        }
    }
}
