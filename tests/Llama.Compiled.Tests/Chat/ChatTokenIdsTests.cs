using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text.Json;
using System.Threading.Tasks;
using Microsoft.Extensions.AI;
using Xunit;

namespace Llama.Compiled.Tests;

/// <summary>
/// Chat prompts as token ids, against transformers' <c>apply_chat_template(..., tokenize=True)</c>: the rendered
/// goldens (TokenizerConfigs/*.golden.txt, jinja2 as transformers renders) tokenized by Hugging Face's own
/// tokenizer with <c>add_special_tokens=False</c> (what apply_chat_template does), in
/// <c>chat_ids.golden.jsonl</c>, made by <c>chat_ids.cjs</c> (its header says how).
/// </summary>
public class ChatTokenIdsTests
{
    private static readonly string Configs = Path.Combine(TestPaths.RepoRoot, "tests", "Llama.Compiled.Tests", "Chat", "TokenizerConfigs");

    private static readonly ChatMessage[] WithSystem =
    [
        new(ChatRole.System, "You are a helpful assistant."),
        new(ChatRole.User, "Hello!"),
        new(ChatRole.Assistant, "Hi there! How can I help?"),
        new(ChatRole.User, "Tell me a story."),
    ];

    public static TheoryData<string, string, string> Cases => new()
    {
        { "Meta-Llama-3-8B-Instruct", "system", "llama3" },
        { "Meta-Llama-3-8B-Instruct", "nosystem", "llama3" },
        { "Llama-3.2-1B-Instruct", "system", "llama3" },
        { "Llama-3.2-1B-Instruct", "nosystem", "llama3" },
        // Qwen2.5 has Qwen3's vocabulary and merges, and its 22 special tokens have the same ids.
        { "Qwen2.5-0.5B-Instruct", "system", "qwen3" },
        { "Qwen2.5-0.5B-Instruct", "nosystem", "qwen3" },
    };

    private static int[] ExpectedIds(string model, string conversation)
    {
        foreach (string line in File.ReadLines(Path.Combine(Configs, "chat_ids.golden.jsonl")))
        {
            using JsonDocument doc = JsonDocument.Parse(line);
            if (doc.RootElement.GetProperty("file").GetString() == $"{model}.{conversation}.golden.txt")
                return doc.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        }
        throw new InvalidOperationException($"no ids for {model}.{conversation}");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void PromptIdsAreTransformersApplyChatTemplateIds(string model, string conversation, string tokenizerName)
    {
        ChatTemplate template = ChatTemplate.FromTokenizerConfig(Path.Combine(Configs, model + ".json"));
        if (template is Llama3ChatTemplate llama3)
            template = llama3 with { DateString = Llama3ChatTemplate.DefaultDateString };
        ByteLevelBpeTokenizer tokenizer = TokenizerGoldens.Tokenizer(tokenizerName);
        var fake = new FakeLlamaModel(tokenizer.VocabularySize, 4096, []);
        using LlamaChatClient client = fake.AsChatClient(tokenizer, template);

        ChatMessage[] messages = conversation == "system" ? WithSystem : WithSystem[1..];
        int[] expected = ExpectedIds(model, conversation);
        int[] actual = client.EncodePrompt(messages);
        Assert.True(expected.SequenceEqual(actual), $"expected {TokenizerGoldens.Show(expected)}\nactual   {TokenizerGoldens.Show(actual)}");
        // One BOS at most, and the template's markers are single ids.
        Assert.True(actual.Count(id => id == 128000) <= 1);
    }

    [Theory]
    [InlineData("llama3", "Meta-Llama-3-8B-Instruct", "<|eot_id|>")]
    [InlineData("qwen3", "Qwen2.5-0.5B-Instruct", "<|im_end|>")]
    public async Task ChatClientStreamsMultiByteAnswersAndStopsAtTheEndOfTurnToken(string tokenizerName, string model, string endOfTurn)
    {
        ByteLevelBpeTokenizer tokenizer = TokenizerGoldens.Tokenizer(tokenizerName);
        const string Answer = "Voilà: 日本語 🦙👩‍👩‍👧‍👦 done!";
        int[] answer = [.. tokenizer.EncodeToIds(Answer, addSpecialTokens: false), tokenizer.AddedTokens[endOfTurn]];
        ChatTemplate template = ChatTemplate.FromTokenizerConfig(Path.Combine(Configs, model + ".json"));
        var fake = new FakeLlamaModel(tokenizer.VocabularySize, 4096, answer);
        using LlamaChatClient client = fake.AsChatClient(tokenizer, template, new GenerationOptions { MaxNewTokens = 100, Sampling = new SamplingOptions { Temperature = 0f } });

        var updates = new List<string>();
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Hi")]))
            updates.Add(update.Text);
        Assert.All(updates, u => Assert.DoesNotContain('\uFFFD', u));
        Assert.Equal(Answer, string.Concat(updates));
        Assert.Equal(ChatFinishReason.Stop, (await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Hi")])).FinishReason);
    }
}
