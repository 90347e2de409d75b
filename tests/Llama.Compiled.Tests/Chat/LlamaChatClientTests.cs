using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using System.Text.Json;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Extensions.AI;
using Microsoft.ML.Tokenizers;
using Xunit;

namespace Llama.Compiled.Tests;

public class LlamaChatClientTests
{
    private static readonly Tokenizer Tokenizer = LlamaTokenizers.Load(TestPaths.Stories260KHf);
    private static readonly GenerationOptions Greedy = new() { MaxNewTokens = 40, Sampling = new SamplingOptions { Temperature = 0f } };

    private static readonly ChatMessage[] Hello = [new(ChatRole.User, "Hello")];

    /// <summary>The ids the tokenizer gives <paramref name="text"/>, without BOS.</summary>
    private static int[] Ids(string text) => Tokenizer.EncodeToIds(text).Skip(1).ToArray();

    [Fact]
    public async Task AnswersWithTheGeneratedTextUsageAndFinishReason()
    {
        int[] answer = Ids("Hi there friend");
        var model = new FakeLlamaModel(512, 512, [.. answer, 2]);
        using LlamaChatClient client = model.AsChatClient(Tokenizer, ChatTemplate.Plain, Greedy);

        ChatResponse response = await client.GetResponseAsync(Hello);

        int[] prompt = client.EncodePrompt(Hello);
        Assert.Equal([1, .. Ids("User: Hello\nAssistant:")], prompt);
        Assert.Equal("Hi there friend", response.Text);
        Assert.Equal(ChatRole.Assistant, response.Messages.Single().Role);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
        Assert.Equal(prompt.Length, response.Usage!.InputTokenCount);
        Assert.Equal(answer.Length, response.Usage.OutputTokenCount);
        Assert.Equal(prompt.Length + answer.Length, response.Usage.TotalTokenCount);
        Assert.Equal("FakeLlamaModel", response.ModelId);
        Assert.NotNull(response.ResponseId);
    }

    [Fact]
    public async Task StreamsTheSameAnswerWithUsageLast()
    {
        int[] answer = Ids("Hi there friend");
        var model = new FakeLlamaModel(512, 512, [.. answer, 2]);
        using LlamaChatClient client = model.AsChatClient(Tokenizer, ChatTemplate.Plain, Greedy);

        List<ChatResponseUpdate> updates = [];
        await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(Hello))
            updates.Add(update);

        Assert.True(updates.Count > 2);
        Assert.Equal("Hi there friend", string.Concat(updates.Select(u => u.Text)));
        Assert.All(updates, u => Assert.Equal(ChatRole.Assistant, u.Role));
        Assert.Single(updates.Select(u => u.ResponseId).Distinct());
        ChatResponse merged = updates.ToChatResponse();
        Assert.Equal("Hi there friend", merged.Text);
        Assert.Equal(ChatFinishReason.Stop, merged.FinishReason);
        Assert.Equal(answer.Length, merged.Usage!.OutputTokenCount);
    }

    [Fact]
    public async Task MaxOutputTokensEndsWithLength()
    {
        int[] answer = Ids("Hi there friend");
        var model = new FakeLlamaModel(512, 512, [.. answer, 2]);
        using LlamaChatClient client = model.AsChatClient(Tokenizer, ChatTemplate.Plain, Greedy);

        ChatResponse response = await client.GetResponseAsync(Hello, new ChatOptions { MaxOutputTokens = 2 });

        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(2, response.Usage!.OutputTokenCount);
        Assert.Equal(Tokenizer.Decode([1, .. answer[..2]]), response.Text);
    }

    [Fact]
    public async Task TheTemplatesStopSequenceEndsTheAnswer()
    {
        // The model goes on to write the user's next line: the plain template stops at "\nUser:".
        var model = new FakeLlamaModel(512, 512, [.. Ids("Hi there\nUser: more"), 2]);
        using LlamaChatClient client = model.AsChatClient(Tokenizer, ChatTemplate.Plain, Greedy);

        ChatResponse response = await client.GetResponseAsync(Hello, new ChatOptions { StopSequences = ["zzz"] });

        Assert.Equal("Hi there", response.Text);
        Assert.Equal(ChatFinishReason.Stop, response.FinishReason);
    }

    [Fact]
    public void ChatOptionsMapToGenerationOptions()
    {
        var model = new FakeLlamaModel(512, 512, [2]);
        var defaults = new GenerationOptions { MaxNewTokens = 99, Sampling = new SamplingOptions { Temperature = 0.7f, TopP = 0.9f, Seed = 5 } };
        using LlamaChatClient client = model.AsChatClient(Tokenizer, ChatTemplate.Llama2, defaults);

        GenerationOptions unset = client.MapOptions(null);
        Assert.Equal(defaults.Sampling, unset.Sampling);
        Assert.Equal(99, unset.MaxNewTokens);
        Assert.Equal(["</s>"], unset.StopSequences);
        Assert.Equal([2], unset.StopTokenIds);

        GenerationOptions mapped = client.MapOptions(new ChatOptions
        {
            Temperature = 0.2f,
            TopP = 0.5f,
            TopK = 7,
            Seed = -1,
            MaxOutputTokens = 12,
            FrequencyPenalty = 0.3f,
            PresencePenalty = 0.4f,
            StopSequences = ["END"],
            AdditionalProperties = new AdditionalPropertiesDictionary
            {
                ["min_p"] = 0.05,
                ["repetition_penalty"] = JsonDocument.Parse("1.1").RootElement,
                ["repetition_window"] = "32",
            },
        });
        Assert.Equal(new SamplingOptions
        {
            Temperature = 0.2f,
            TopP = 0.5f,
            TopK = 7,
            Seed = ulong.MaxValue,
            FrequencyPenalty = 0.3f,
            PresencePenalty = 0.4f,
            MinP = 0.05f,
            RepetitionPenalty = 1.1f,
            RepetitionWindow = 32,
        }, mapped.Sampling);
        Assert.Equal(12, mapped.MaxNewTokens);
        Assert.Equal(["</s>", "END"], mapped.StopSequences);

        var bad = new ChatOptions { AdditionalProperties = new AdditionalPropertiesDictionary { ["min_p"] = "lots" } };
        Assert.Throws<ArgumentException>("options", () => client.MapOptions(bad));
    }

    [Fact]
    public async Task InvalidSamplingOptionsThrow()
    {
        var model = new FakeLlamaModel(512, 512, [2]);
        using LlamaChatClient client = model.AsChatClient(Tokenizer, ChatTemplate.Plain, Greedy);

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => client.GetResponseAsync(Hello, new ChatOptions { TopP = 3f }));
        // The client is still usable afterwards.
        Assert.Equal("", (await client.GetResponseAsync(Hello)).Text);
    }

    [Fact]
    public void InstructionsBecomeTheSystemMessage()
    {
        var model = new FakeLlamaModel(512, 512, [2]);
        using LlamaChatClient client = model.AsChatClient(Tokenizer, ChatTemplate.Plain, Greedy);

        Assert.Equal(
            [1, .. Ids("Be brief.\n\nUser: Hello\nAssistant:")],
            client.EncodePrompt(Hello, new ChatOptions { Instructions = "Be brief." }));
        Assert.Equal(
            [1, .. Ids("Be kind.\nBe brief.\n\nUser: Hello\nAssistant:")],
            client.EncodePrompt([new(ChatRole.System, "Be kind."), .. Hello], new ChatOptions { Instructions = "Be brief." }));
    }

    [Fact]
    public void SpecialTokensOfTheTemplateAreSingleIds()
    {
        var model = new FakeLlamaModel(512, 512, [2]);
        using LlamaChatClient client = model.AsChatClient(Tokenizer, ChatTemplate.Llama2, Greedy);

        int[] ids = client.EncodePrompt([new(ChatRole.User, "Hi"), new(ChatRole.Assistant, "Yo"), new(ChatRole.User, "Go")]);

        // "<s>[INST] Hi [/INST] Yo </s><s>[INST] Go [/INST]": BOS and EOS are ids 1 and 2, the text
        // between them is encoded piece by piece (SentencePiece adds its dummy prefix to each).
        Assert.Equal([1, .. Ids("[INST] Hi [/INST] Yo "), 2, 1, .. Ids("[INST] Go [/INST]")], ids);
    }

    [Fact]
    public async Task TheNextTurnOnlyFeedsTheNewTokens()
    {
        int[] answer = Ids("Hi there");
        var model = new FakeLlamaModel(512, 512, [.. answer, 2, .. Ids("Fine"), 2]);
        using LlamaChatClient client = model.AsChatClient(Tokenizer, ChatTemplate.Plain, Greedy);
        List<ChatMessage> history = [.. Hello];

        ChatResponse first = await client.GetResponseAsync(history);
        history.AddRange(first.Messages);
        history.Add(new ChatMessage(ChatRole.User, "How are you?"));
        ChatResponse second = await client.GetResponseAsync(history);

        Assert.Equal("Fine", second.Text);
        int cached = client.EncodePrompt(Hello).Length + answer.Length;
        Assert.Equal(cached, second.Usage!.CachedInputTokenCount);
        Assert.Equal(client.EncodePrompt(history).Length, second.Usage.InputTokenCount);
    }

    [Fact]
    public async Task AnotherConversationResetsTheSession()
    {
        var model = new FakeLlamaModel(512, 512, [.. Ids("Hi"), 2]);
        using LlamaChatClient client = model.AsChatClient(Tokenizer, ChatTemplate.Plain, Greedy);

        await client.GetResponseAsync(Hello);
        ChatResponse other = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Bye")]);

        Assert.Equal(0, other.Usage!.CachedInputTokenCount);
        Assert.Equal("Hi", other.Text);
    }

    [Fact]
    public async Task CancellationStopsTheAnswerAndReleasesTheClient()
    {
        var model = new FakeLlamaModel(512, 512, [.. Ids("Hi there my good friend"), 2, .. Ids("Hi"), 2]);
        using LlamaChatClient client = model.AsChatClient(Tokenizer, ChatTemplate.Plain, Greedy);
        using var cancellation = new CancellationTokenSource();

        var text = new StringBuilder();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (ChatResponseUpdate update in client.GetStreamingResponseAsync(Hello, cancellationToken: cancellation.Token))
            {
                text.Append(update.Text);
                cancellation.Cancel();
            }
        });

        // One chunk (the first token's text), then nothing.
        Assert.Equal(Tokenizer.Decode([1, Ids("Hi there my good friend")[0]]), text.ToString());
        Assert.Equal(StopReason.Cancelled, client.LastStats!.StopReason);
        ChatResponse next = await client.GetResponseAsync([new ChatMessage(ChatRole.User, "Again")]);
        Assert.Equal("Hi there my good friend", next.Text);
    }

    [Fact]
    public async Task RequestsAreServedOneAtATime()
    {
        var model = new FakeLlamaModel(512, 512, [.. Ids("Hi there"), 2]);
        using LlamaChatClient client = model.AsChatClient(Tokenizer, ChatTemplate.Plain, Greedy);

        IAsyncEnumerator<ChatResponseUpdate> stream = client.GetStreamingResponseAsync(Hello).GetAsyncEnumerator();
        Assert.True(await stream.MoveNextAsync());

        Task<ChatResponse> waiting = client.GetResponseAsync(Hello);
        await Task.Delay(50);
        Assert.False(waiting.IsCompleted);

        while (await stream.MoveNextAsync())
        {
        }
        await stream.DisposeAsync();
        Assert.Equal("Hi there", (await waiting.WaitAsync(TimeSpan.FromSeconds(10))).Text);
    }

    [Fact]
    public void GetServiceReturnsTheClientItsPartsAndMetadata()
    {
        var model = new FakeLlamaModel(512, 512, [2]);
        using LlamaChatClient client = model.AsChatClient(Tokenizer, ChatTemplate.Plain, Greedy);
        IChatClient chat = client;

        Assert.Same(client, chat.GetService<LlamaChatClient>());
        Assert.Same(model, chat.GetService<ILlamaModel>());
        Assert.Same(Tokenizer, chat.GetService<Tokenizer>());
        Assert.IsType<PlainChatTemplate>(chat.GetService<ChatTemplate>());
        ChatClientMetadata metadata = chat.GetService<ChatClientMetadata>()!;
        Assert.Equal("Llama.Compiled", metadata.ProviderName);
        Assert.Equal("FakeLlamaModel", metadata.DefaultModelId);
        Assert.Null(chat.GetService<LlamaChatClient>("key"));
    }

    [Fact]
    public async Task ChatsWithStories260K()
    {
        using var model = Stories260K.Load(TestPaths.Stories260KHf);
        using LlamaChatClient client = model.AsChatClient(TestPaths.Stories260KHf, Greedy);
        Assert.IsType<PlainChatTemplate>(client.Template);

        List<ChatMessage> history = [new(ChatRole.User, "Tell me about a cat.")];
        ChatResponse first = await client.GetResponseAsync(history);
        history.AddRange(first.Messages);
        history.Add(new ChatMessage(ChatRole.User, "What did the cat do?"));
        ChatResponse second = await client.GetResponseAsync(history);

        Assert.False(string.IsNullOrWhiteSpace(first.Text));
        Assert.False(string.IsNullOrWhiteSpace(second.Text));
        // The second turn continued the first's KV cache...
        Assert.True(second.Usage!.CachedInputTokenCount > 0, "the session was not reused");
        // ...and a fresh client, evaluating the whole conversation, answers the same.
        using LlamaChatClient fresh = model.AsChatClient(TestPaths.Stories260KHf, Greedy);
        ChatResponse again = await fresh.GetResponseAsync(history);
        Assert.Equal(0, again.Usage!.CachedInputTokenCount);
        Assert.Equal(second.Text, again.Text);
    }
}
